"""Batches of concurrent tickets written together, on SQLite and on a real PostgreSQL: one
transaction for all, each batch its own result, a batch the database refuses failing only itself;
and the write statements compiled once, whatever the number of events of a batch."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Compiled

from activities.models import StoreBatch, StoreResult
from store.repository import Store
from tests.test_store import event as stored_event
from tests.test_store import record

TOO_BIG = 2**70  # an integer neither database takes: SQLite's is 64 bits, PostgreSQL's `integer` 32


def batch(life: int, first: int, count: int, **fields: Any) -> StoreBatch:
    ticket = {"ticket_id": f"T-{life}"} if first == 0 else None
    return StoreBatch(
        record=record(life_id=f"life-{life}", ticket_id=f"T-{life}", ticket=ticket, **fields),
        first_seq=first,
        events=[stored_event(seq) for seq in range(first, first + count)],
    )


def count_commits(store: Store) -> list[int]:
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    return commits


def seqs(store: Store, life: int) -> list[int]:
    return [e.seq for e in store.events([f"life-{life}"])]


def test_batches_of_several_tickets_go_in_one_transaction_each_with_its_own_result(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.migrate()
        store.write(batch(1, 0, 3))
        commits = count_commits(store)
        batches = [
            batch(2, 0, 4),
            batch(1, 3, 2, state="resolved"),  # the next batch of a life already stored
            batch(3, 0, 1),
            batch(1, 0, 3),  # a retried flush, arriving late: duplicates, and the summary stays
            batch(4, 0, 0),  # the summary row alone
            batch(2, 4, 200),
        ]
        outcomes = store.write_many(batches)
        assert len(commits) == 1
        assert [(r.written, r.duplicates) for r in outcomes if isinstance(r, StoreResult)] == [
            (4, 0),
            (2, 0),
            (1, 0),
            (0, 3),
            (0, 0),
            (200, 0),
        ]
        assert seqs(store, 1) == list(range(5)) and seqs(store, 2) == list(range(204)) and seqs(store, 3) == [0]
        life = store.life("T-1")
        assert life is not None and life.ticket.state == "resolved" and life.ticket.events_stored == 5
        assert life.ticket.ticket == {"ticket_id": "T-1"}
        four = store.life("T-4")
        assert four is not None and four.ticket.events_stored == 0 and four.events == []
        again = store.write_many(batches)  # all of it repeated: nothing new
        assert [(r.written, r.duplicates) for r in again if isinstance(r, StoreResult)] == [
            (0, len(b.events)) for b in batches
        ]
    finally:
        store.dispose()


def test_a_batch_the_database_refuses_fails_only_itself(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.migrate()
        bad_event = batch(2, 0, 2)
        bad_event.events[1].tier = TOO_BIG
        batches = [batch(1, 0, 2), batch(2, 0, 0, tier=TOO_BIG), batch(3, 0, 3), bad_event]
        outcomes = store.write_many(batches)
        assert outcomes[0] == StoreResult(written=2) and outcomes[2] == StoreResult(written=3)
        assert isinstance(outcomes[1], Exception) and isinstance(outcomes[3], Exception)
        assert seqs(store, 1) == [0, 1] and seqs(store, 3) == [0, 1, 2]
        assert store.life("T-2") is None  # its transaction rolled back: not even the summary row
    finally:
        store.dispose()


def test_an_unreachable_database_is_every_batch_s_error_at_once() -> None:
    store = Store("postgresql+psycopg://nobody@127.0.0.1:1/nothing", connect_args={"connect_timeout": 5})
    tries: list[int] = []
    event.listen(store.engine, "do_connect", lambda *_: tries.append(1))
    try:
        outcomes = store.write_many([batch(1, 0, 1), batch(2, 0, 1), batch(3, 0, 1)])
        assert all(isinstance(o, Exception) for o in outcomes) and len({id(o) for o in outcomes}) == 1
        assert tries == [1]  # one try for all: not one more per batch
    finally:
        store.dispose()


def test_the_write_statements_are_compiled_once(store_url: str) -> None:
    """SQLAlchemy's compiled cache serves every write: a handful of compiled statements (the summary
    row with or without the ticket, one event or several) for any number of batches and events."""
    store = Store(store_url)
    store.migrate()
    compiled: list[Compiled] = []
    misses: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def seen(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            if not any(context.compiled is c for c in compiled):
                compiled.append(context.compiled)
            if "HIT" not in str(context.cache_hit):
                misses.append(statement)

    try:
        for life in range(30):  # every size from 0 to 29 events, with and without the ticket
            store.write(batch(life, 0, life))
            store.write(batch(life, life, 1 + life % 7))
        store.write_many([batch(100 + n, 0, n) for n in range(10)])
        assert len(compiled) <= 4, [c.string for c in compiled]
        assert len(misses) == len(compiled)  # each compiled once, on its first use; every other write a hit
    finally:
        store.dispose()
