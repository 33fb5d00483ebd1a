"""`store_events`: write a batch of a ticket's events and its summary row to the record store.

Idempotent (rows keyed by the ticket's life and event number, see `store.repository`), so the
workflow retries it without limit: a database outage delays the record, it never loses a row
and never stores one twice. The database is opened (and migrated) on first use, so a worker
starts while its database is down and catches up once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.models import StoreBatch, StoreResult
from config.settings import Settings
from store.repository import Store, shared_store
from workflows.metrics import DESCRIPTIONS, STORE_WRITES

log = structlog.get_logger("activities.store")


def _count_write(result: str) -> None:
    with contextlib.suppress(Exception):  # a metric never fails the write
        activity.metric_meter().create_counter(STORE_WRITES, DESCRIPTIONS[STORE_WRITES]).add(1, {"result": result})


class StoreActivities:
    def __init__(self, settings: Settings) -> None:
        self._url = settings.store_database_url
        self._store: Store | None = None

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
            result = await asyncio.to_thread(lambda: self._open().write(batch))
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
