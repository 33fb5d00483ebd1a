"""`store_events`: write a batch of a ticket's events and its summary row to the record store.

Idempotent (rows keyed by the ticket's life and event number, see `store.repository`), so the
workflow retries it without limit: a database outage delays the record, it never loses a row
and never stores one twice. The database is opened (and migrated) on first use, so a worker
starts while its database is down and catches up once it is back.

Batches of concurrent tickets share a write: the calls that arrive within a few milliseconds of
each other, or while a write is in progress, go to the database together (`Store.write_many`: one
thread hop, one transaction). Each call still gets its own batch's result, or its own error (a
batch the database refuses is written again on its own and fails alone), and is counted and
logged on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from config.settings import Settings
from store.repository import Store, shared_store
from workflows.messages import StoreBatch, StoreResult
from workflows.metrics import DESCRIPTIONS, STORE_WRITES

log = structlog.get_logger("activities.store")


def _count_write(result: str) -> None:
    with contextlib.suppress(Exception):  # a metric never fails the write
        activity.metric_meter().create_counter(STORE_WRITES, DESCRIPTIONS[STORE_WRITES]).add(1, {"result": result})


WriteMany = Callable[[Sequence[StoreBatch]], list[StoreResult | Exception]]


class SharedWrites:
    """Collects the batches of concurrent callers and writes them together, one write at a time.

    A call waits `window` seconds for others to join it (none if a write is in progress: its
    successors gather meanwhile); a write takes up to `max_batches` batches and, beyond the
    first batch, up to `max_events` events. Lives in the event loop of its callers (the worker's).
    """

    def __init__(
        self, write_many: WriteMany, window: float = 0.002, max_batches: int = 64, max_events: int = 2000
    ) -> None:
        self._write_many = write_many
        self._window = window
        self._max_batches = max_batches
        self._max_events = max_events
        self._waiting: list[tuple[StoreBatch, asyncio.Future[StoreResult]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def write(self, batch: StoreBatch) -> StoreResult:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a new event loop (tests): nothing of the old one is usable
            self._loop, self._waiting, self._writer = loop, [], None
        future: asyncio.Future[StoreResult] = loop.create_future()
        self._waiting.append((batch, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write_all(), name="store writes")
        return await future

    def _take(self) -> list[tuple[StoreBatch, asyncio.Future[StoreResult]]]:
        taken: list[tuple[StoreBatch, asyncio.Future[StoreResult]]] = []
        events = 0
        while self._waiting and len(taken) < self._max_batches:
            batch, future = self._waiting[0]
            if taken and events + len(batch.events) > self._max_events:
                break
            self._waiting.pop(0)
            if not future.done():  # a caller cancelled before its write began has nothing to write
                taken.append((batch, future))
                events += len(batch.events)
        return taken

    async def _write_all(self) -> None:
        group: list[tuple[StoreBatch, asyncio.Future[StoreResult]]] = []
        try:
            await asyncio.sleep(self._window)
            while self._waiting:
                group = self._take()
                if not group:
                    continue
                try:
                    outcomes = await asyncio.to_thread(self._write_many, [batch for batch, _ in group])
                except Exception as exc:  # the store could not be opened (its database down at first use)
                    outcomes = [exc] * len(group)
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():  # its caller was cancelled meanwhile (the write may have happened)
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                group = []
        finally:
            # Only if this task itself was cancelled (its event loop closing) or broke: no caller waits forever.
            for _, future in [*group, *self._waiting]:
                if not future.done():
                    future.cancel()
            self._waiting = []
            self._writer = None


class StoreActivities:
    def __init__(self, settings: Settings, window: float = 0.002) -> None:
        self._url = settings.store_database_url
        self._store: Store | None = None
        self._writes = SharedWrites(lambda batches: self._open().write_many(batches), window=window)

    def _open(self) -> Store:
        if self._store is None:
            self._store = shared_store(self._url)
        return self._store

    @activity.defn(name="store_events")
    async def store_events(self, batch: StoreBatch) -> StoreResult:
        info = activity.info()
        bound = log.bind(
            ticket_id=batch.record.ticket_id,
            life_id=batch.record.life_id,
            first_seq=batch.first_seq,
            events=len(batch.events),
            attempt=info.attempt,
        )
        try:
            result = await self._writes.write(batch)
        except Exception as exc:
            # The database is down or refused the write: Temporal retries (without limit, waits up
            # to a minute apart); the ticket goes on escalating meanwhile. Counted, so that an outage
            # alerts (`RecordStoreFailing`): the error is benign to the SDK, which counts nothing.
            _count_write("failed")
            (bound.warning if info.attempt <= 3 or info.attempt % 20 == 0 else bound.debug)(
                "store.write_failed", error=f"{type(exc).__name__}: {str(exc)[:300]}"
            )
            raise ApplicationError(
                f"record store unavailable: {type(exc).__name__}",
                type="StoreUnavailable",
                category=ApplicationErrorCategory.BENIGN,
            ) from None
        _count_write("written")
        if info.attempt > 1 or result.duplicates:
            bound.info("store.written", written=result.written, duplicates=result.duplicates)
        return result

    def all(self) -> list[object]:
        return [self.store_events]
