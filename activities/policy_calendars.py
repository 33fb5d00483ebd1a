"""Records in the store the calendars each policy version freezes into its tickets, so the review
counts a ticket's business time on its own calendars long after the policy file changed.

Written in the background, once per policy version and holiday year per worker process: no ticket
waits for it, and a store that is down gets it when it is back (tried again every `retry` seconds).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from store.repository import shared_store
from workflows.messages import PolicySnapshot

log = structlog.get_logger("activities.store")


class CalendarRecorder:
    def __init__(self, store_url: str, retry: float = 60.0) -> None:
        self._url = store_url
        self._retry = retry
        self._recorded: set[tuple[str, int]] = set()
        self._writing: dict[tuple[str, int], asyncio.Task[None]] = {}

    def record(self, snapshot: PolicySnapshot, year: int) -> None:
        """Start writing the snapshot's calendars for `year`, unless done or under way."""
        key = (snapshot.version, year)
        if not snapshot.store_events or key in self._recorded or key in self._writing:
            return
        calendars = snapshot.document.get("calendars")
        if not isinstance(calendars, dict):
            return
        task = asyncio.get_running_loop().create_task(self._write(key, calendars), name="record calendars")
        self._writing[key] = task
        task.add_done_callback(lambda _: self._writing.pop(key, None))

    async def _write(self, key: tuple[str, int], calendars: dict[str, Any]) -> None:
        version, year = key
        while True:
            try:
                await asyncio.to_thread(lambda: shared_store(self._url).record_calendars(version, year, calendars))
            except Exception as exc:
                log.warning("store.calendars_failed", policy_version=version, year=year, error=type(exc).__name__)
                await asyncio.sleep(self._retry)
            else:
                self._recorded.add(key)
                return
