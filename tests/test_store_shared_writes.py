"""Batches of concurrent tickets written together, on SQLite and on a real PostgreSQL: one
transaction for all, each batch its own result, a batch the database refuses failing only itself;
and the write statements compiled once, whatever the number of events of a batch. Then the
`store_events` activity: concurrent calls share one write, each gets its own answer or its own
`StoreUnavailable`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.engine import Compiled
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

from activities.store_activities import SharedWrites, StoreActivities
from config.settings import Settings
from store.repository import Store
from tests.test_store import event as stored_event
from tests.test_store import record
from workflows.messages import StoreBatch, StoreResult

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


# ---------------------------------------------------------------------- the activity
def settings(url: str) -> Settings:
    return Settings(store_url=SecretStr(url))


async def run_all(activities: StoreActivities, batches: Sequence[StoreBatch]) -> list[Any]:
    env = ActivityEnvironment()
    calls = [env.run(activities.store_events, b) for b in batches]
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def test_concurrent_store_events_share_one_write_and_each_gets_its_own_answer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'store.db'}"
    activities = StoreActivities(settings(url))
    assert not (tmp_path / "nested").exists()  # opened on first use
    groups: list[int] = []
    store = Store(url)
    try:
        write_many = activities._writes._write_many

        def counted(batches: Sequence[StoreBatch]) -> list[StoreResult | Exception]:
            groups.append(len(batches))
            return write_many(batches)

        activities._writes._write_many = counted
        bad = batch(4, 0, 1, tier=TOO_BIG)
        answers = await run_all(activities, [batch(1, 0, 2), batch(2, 0, 3), batch(3, 0, 1), bad, batch(5, 0, 4)])
        assert groups[0] == 5  # one write for all, then the bad one's error
        assert answers[0] == StoreResult(written=2) and answers[1] == StoreResult(written=3)
        assert answers[2] == StoreResult(written=1) and answers[4] == StoreResult(written=4)
        failed = answers[3]
        assert isinstance(failed, ApplicationError) and failed.type == "StoreUnavailable"
        assert failed.category == ApplicationErrorCategory.BENIGN
        assert [e.seq for e in store.events()] == [0, 1, 0, 1, 2, 0, 0, 1, 2, 3]
        groups.clear()  # repeated (retried flushes): duplicates
        again = await run_all(activities, [batch(1, 0, 2), batch(2, 0, 3), batch(6, 0, 2)])
        assert again == [
            StoreResult(written=0, duplicates=2),
            StoreResult(written=0, duplicates=3),
            StoreResult(written=2),
        ]
        assert groups == [3]
    finally:
        store.dispose()


async def test_a_database_that_is_down_is_each_caller_s_store_unavailable() -> None:
    activities = StoreActivities(settings("postgresql+psycopg://nobody@127.0.0.1:1/nothing"))
    answers = await run_all(activities, [batch(1, 0, 1), batch(2, 0, 2)])
    for answer in answers:
        assert isinstance(answer, ApplicationError) and answer.type == "StoreUnavailable"


async def test_a_caller_cancelled_before_its_write_is_left_out() -> None:
    written: list[list[str]] = []

    def write_many(batches: Sequence[StoreBatch]) -> list[StoreResult | Exception]:
        written.append([b.record.life_id for b in batches])
        return [StoreResult(written=len(b.events)) for b in batches]

    shared = SharedWrites(write_many, window=0.05)
    first = asyncio.create_task(shared.write(batch(1, 0, 1)))
    second = asyncio.create_task(shared.write(batch(2, 0, 2)))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == StoreResult(written=2)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert written == [["life-2"]]


async def test_batches_arriving_while_a_write_is_in_progress_go_together_in_the_next() -> None:
    written: list[list[str]] = []
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def write_many(batches: Sequence[StoreBatch]) -> list[StoreResult | Exception]:
        written.append([b.record.life_id for b in batches])
        if len(written) == 1:
            loop.call_soon_threadsafe(started.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=10)
        return [StoreResult(written=len(b.events)) for b in batches]

    shared = SharedWrites(write_many, window=0)
    first = asyncio.create_task(shared.write(batch(1, 0, 1)))
    await started.wait()
    later = [asyncio.create_task(shared.write(batch(n, 0, n))) for n in (2, 3, 4)]
    await asyncio.sleep(0.05)
    release.set()
    assert await first == StoreResult(written=1)
    assert [await t for t in later] == [StoreResult(written=n) for n in (2, 3, 4)]
    assert written == [["life-1"], ["life-2", "life-3", "life-4"]]
