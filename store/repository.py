"""`Store`: the small API over the record store. Synchronous SQLAlchemy 2; async callers use a thread.

Writes are idempotent: a batch carries events numbered within the ticket's life, and a row that
is already there is left as it is (`ON CONFLICT DO NOTHING` on (`life_id`, `seq`)), so a flush
retried after a timeout, repeated by a replayed workflow task or re-sent by the next run after a
continue-as-new stores every event exactly once. The summary row only moves forward (a late,
stale attempt never overwrites a newer summary).

The insert statements are built once per `Store` and executed with parameters (a list of rows: an
executemany), so SQLAlchemy compiles each of them once and its compiled cache serves every later
write; a statement with the rows inline (`.values(rows)`) has no cache key and was compiled anew
for every batch. `write_many` writes the batches of several tickets in one transaction; when that
fails it writes each on its own, so one batch the database refuses fails only itself.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Insert, create_engine, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.url import make_url
from sqlalchemy.orm import Session

from store.models import EventRow, TicketRow
from store.review_models import PolicyCalendarsRow
from workflows.messages import StoreBatch, StoreResult

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LIMITS = {"kind": 100, "actor": 300, "rule": 300, "clock": 32, "department": 200, "policy_version": 200}


def _clean_str(value: str) -> str:
    """PostgreSQL refuses NUL characters and unpaired surrogates in text and JSON: replace them."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, dict):
        return {_clean_str(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _cut(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    return _clean_str(value)[: _LIMITS[field]]


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Life:
    """One life of a ticket as stored: its summary row and its events (timeline rows by default)."""

    ticket: TicketRow
    events: list[EventRow]


@dataclass(frozen=True)
class _Statements:
    """The write statements of one dialect, built once: parameters only at execution."""

    summary: Insert  # the summary row; the ticket as opened taken from the batch
    summary_keep_ticket: Insert  # the same, keeping the stored ticket (batches after the first carry none)
    events: Insert  # event rows not stored yet, returning the numbers of those inserted


_SUMMARY_KEEP = frozenset({"life_id", "ticket_id", "opened_at", "complete"})


def _statements(dialect: str) -> _Statements:
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    columns = [c.name for c in TicketRow.__table__.columns]

    def summary(keep: frozenset[str]) -> Insert:
        statement = insert(TicketRow)
        return statement.on_conflict_do_update(
            index_elements=["life_id"],
            set_={k: statement.excluded[k] for k in columns if k not in keep},
            where=TicketRow.events_stored <= statement.excluded.events_stored,
        )

    return _Statements(
        summary=summary(_SUMMARY_KEEP),
        summary_keep_ticket=summary(_SUMMARY_KEEP | {"ticket"}),
        events=insert(EventRow).on_conflict_do_nothing(index_elements=["life_id", "seq"]).returning(EventRow.seq),
    )


def _summary_row(batch: StoreBatch, now: datetime) -> dict[str, Any]:
    record = batch.record
    return {
        "life_id": record.life_id,
        "ticket_id": record.ticket_id,
        "workflow_id": _clean_str(record.workflow_id)[:255],
        "opened_at": record.opened_at,
        "channel": _clean_str(record.channel)[:64],
        "category": _clean_str(record.category)[:100],
        "priority": record.priority[:32],
        "segment": _clean_str(record.segment)[:64],
        "source": _clean_str(record.source)[:100],
        "policy_version": _clean_str(record.policy_version)[:200],
        "route": _clean_str(record.route)[:200] if record.route else None,
        "state": record.state[:32],
        "tier": record.tier,
        "department": _clean_str(record.department)[:200],
        "current_priority": record.current_priority[:32],
        "assignee": _clean_str(record.assignee)[:200] if record.assignee else None,
        "escalations": record.escalations,
        "breaches": record.breaches,
        "first_response_at": record.first_response_at,
        "resolved_at": record.resolved_at,
        "closed_at": record.closed_at,
        "summary": _clean(record.summary) if record.summary is not None else None,
        "ticket": _clean(record.ticket) if record.ticket is not None else None,
        "events_stored": batch.first_seq + len(batch.events),
        "complete": record.complete,
        "updated_at": now,
    }


def _event_rows(batch: StoreBatch, now: datetime) -> list[dict[str, Any]]:
    record = batch.record
    return [
        {
            "life_id": record.life_id,
            "seq": e.seq,
            "ticket_id": record.ticket_id,
            "stream": e.stream,
            "at": e.at,
            "kind": _cut(e.kind, "kind"),
            "actor": _cut(e.actor, "actor"),
            "rule": _cut(e.rule, "rule"),
            "clock": _cut(e.clock, "clock"),
            "deadline": _when(e.deadline),
            "tier": e.tier,
            "department": _cut(e.department, "department"),
            "reason": _clean_str(e.reason) if e.reason is not None else None,
            "policy_version": _cut(e.policy_version, "policy_version"),
            "data": _clean(e.data),
            "stored_at": now,
        }
        for e in batch.events
    ]


class Store:
    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = make_url(url)
        if self.url.get_backend_name() == "sqlite":
            if self.url.database:
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            engine_options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        else:
            engine_options.setdefault("pool_pre_ping", True)
            engine_options.setdefault("pool_size", 5)
        self.engine: Engine = create_engine(self.url, **engine_options)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # SQLite takes one writer at a time: queue ours here instead of meeting "database is locked".
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        self._statements = _statements(self.dialect)
        self._migrated = False

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        """The URL without its password, for logs and answers."""
        return self.url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------ schema
    def migrate(self) -> str:
        """Bring the schema to the newest revision (Alembic `upgrade head`); returns the revision."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        self._migrated = True
        return self.revision() or ""

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head(self) -> str:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        return ScriptDirectory.from_config(config).get_current_head() or ""

    def ensure_migrated(self) -> None:
        if not self._migrated:
            self.migrate()

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ writing
    def write(self, batch: StoreBatch) -> StoreResult:
        """Store one batch: upsert the summary row, insert the events not stored yet."""
        outcome = self.write_many([batch])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def write_many(self, batches: Sequence[StoreBatch]) -> list[StoreResult | Exception]:
        """Store several batches (of any tickets) in one transaction: each one's result, in order.

        If that transaction fails, each batch is written in its own, and gets its own result or
        error. A database that cannot be reached at all is every batch's error, at once.
        """
        if not batches:
            return []
        lock = self._write_lock if self._write_lock is not None else contextlib.nullcontext()
        with lock:
            try:
                conn = self.engine.connect()
            except Exception as exc:
                return [exc] * len(batches)
            # In the order of their lives (the same life keeps its order): two transactions that
            # hold batches of the same lives take their row locks in the same order.
            order = sorted(range(len(batches)), key=lambda i: batches[i].record.life_id)
            try:
                with conn, conn.begin():
                    now = datetime.now(UTC)
                    written = {i: self._write_on(conn, batches[i], now) for i in order}
                return [written[i] for i in range(len(batches))]
            except Exception as exc:
                if len(batches) == 1:
                    return [exc]
            return [self._write_alone(batch) for batch in batches]

    def _write_alone(self, batch: StoreBatch) -> StoreResult | Exception:
        try:
            with self.engine.begin() as conn:
                return self._write_on(conn, batch, datetime.now(UTC))
        except Exception as exc:
            return exc

    def _write_on(self, conn: Connection, batch: StoreBatch, now: datetime) -> StoreResult:
        statements = self._statements
        summary = statements.summary if batch.record.ticket is not None else statements.summary_keep_ticket
        conn.execute(summary, _summary_row(batch, now))
        written = 0
        if batch.events:
            # A list of rows: one compiled statement for any number of them (SQLAlchemy's
            # "insertmanyvalues" sends them as one multi-row INSERT ... RETURNING).
            written = len(conn.execute(statements.events, _event_rows(batch, now)).all())
        return StoreResult(written=written, duplicates=len(batch.events) - written)

    def record_calendars(self, policy_version: str, year: int, calendars: dict[str, Any]) -> None:
        """The calendars a policy version froze into the tickets of a holiday year (once: the
        first write stays, a version's frozen calendars never change)."""
        insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        row = {"policy_version": policy_version[:200], "year": year, "calendars": _clean(calendars)}
        lock = self._write_lock if self._write_lock is not None else contextlib.nullcontext()
        with lock, self.engine.begin() as conn:
            conn.execute(insert(PolicyCalendarsRow).on_conflict_do_nothing(), row | {"stored_at": datetime.now(UTC)})

    # ------------------------------------------------------------------ reading
    def lives(self, ticket_id: str) -> list[TicketRow]:
        """Every life of a ticket id, newest first."""
        with Session(self.engine, expire_on_commit=False) as session:
            rows = session.scalars(
                select(TicketRow).where(TicketRow.ticket_id == ticket_id).order_by(TicketRow.opened_at.desc())
            )
            return list(rows)

    def life(self, ticket_id: str, life_id: str | None = None, streams: Sequence[str] = ("timeline",)) -> Life | None:
        """The newest life of the ticket (or the one named), with its events in order."""
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(TicketRow).where(TicketRow.ticket_id == ticket_id)
            if life_id is not None:
                query = query.where(TicketRow.life_id == life_id)
            ticket = session.scalars(query.order_by(TicketRow.opened_at.desc()).limit(1)).first()
            if ticket is None:
                return None
            events = session.scalars(
                select(EventRow)
                .where(EventRow.life_id == ticket.life_id, EventRow.stream.in_(list(streams)))
                .order_by(EventRow.seq)
            )
            return Life(ticket, list(events))

    def tickets(self, opened_since: datetime | None = None, opened_before: datetime | None = None) -> list[TicketRow]:
        """Summary rows of the lives opened in a period (all when no bounds), oldest first."""
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(TicketRow)
            if opened_since is not None:
                query = query.where(TicketRow.opened_at >= opened_since)
            if opened_before is not None:
                query = query.where(TicketRow.opened_at < opened_before)
            return list(session.scalars(query.order_by(TicketRow.opened_at, TicketRow.life_id)))

    def events(
        self,
        life_ids: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        streams: Sequence[str] = ("timeline", "action"),
    ) -> list[EventRow]:
        """Event rows of the given lives (all when None), optionally of some kinds, by life and number."""
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(EventRow).where(EventRow.stream.in_(list(streams)))
            if life_ids is not None:
                query = query.where(EventRow.life_id.in_(list(life_ids)))
            if kinds is not None:
                query = query.where(EventRow.kind.in_(list(kinds)))
            return list(session.scalars(query.order_by(EventRow.life_id, EventRow.seq)))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def shared_store(url: str) -> Store:
    """One migrated `Store` per URL per process (the worker's activities and the API share it)."""
    with _STORES_LOCK:
        store = _STORES.get(url)
        if store is None:
            store = _STORES[url] = Store(url)
        store.ensure_migrated()
        return store
