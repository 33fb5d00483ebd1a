"""Flood control: one durable workflow per recipient (a person at an endpoint, or a chat endpoint).

`FloodControl` (workflow id `flood-<endpoint>:<person>`) is started, or found, by the delivery
activity with signal-with-start (`admit`, carrying the notice and its key). A notice arriving when
no window is open opens one (`window` long, from the policy). The first `limit` notices of a
window are sent at once, by this workflow (activity `notify`, with the notice's own key, so the
Message-ID / block id are those of the notice); the rest wait for the window's end, when one
digest lists every notice of the window, those sent on their own marked as such (activity
`send_digest`, key `<workflow id>-<window start>`, the same on every retry). A key seen before (a
retried notice) changes nothing. The workflow ends when nothing new came for `LINGER` after a
window closed.

Signals, not updates: the server allows ten updates in flight per workflow, and forty tickets
breaching at one instant to one department head are forty notices at once.

Durable: a worker killed mid-window loses nothing; the admitted notices and the window's timer are
in this workflow's history, and the digest goes out once when a worker runs it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import workflows.metrics as metrics
    from workflows.activity_interfaces import ActivityOptions, TicketActivityInterface
    from workflows.messages import (
        AdmitInput,
        DigestDeliverInput,
        DigestEntry,
        DigestInput,
        DigestSummary,
        FloodInput,
    )

MAX_LISTED = 500  # entries listed in one digest; beyond, counted ("... and N more")
MAX_KEYS = 2000  # keys remembered, so a retried notice is recognised (carried across continue-as-new)
# After a window closes, the workflow waits this long for more before it ends (and forgets the
# keys): a ticket retries a notice whose hand-over it did not hear back about within minutes.
LINGER = timedelta(minutes=15)
TRY_FOR = timedelta(days=2)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["DeliveryRejected", "TemplateFailed"],
)
SEND_OPTIONS = ActivityOptions(
    start_to_close_timeout=timedelta(seconds=30), schedule_to_close_timeout=TRY_FOR, retry_policy=RETRY
)


def flood_workflow_id(flood_key: str) -> str:
    return "flood-" + re.sub(r"[^A-Za-z0-9._:@-]", "_", flood_key)[:200]


@workflow.defn(name="FloodControl")
class FloodControl:
    @workflow.init
    def __init__(self, flood: FloodInput) -> None:
        self._flood = flood
        self._inbox: list[AdmitInput] = []
        self._seen: list[str] = list(flood.seen)[-MAX_KEYS:]
        self._known = set(self._seen)
        self._entries: list[DigestEntry] = []
        self._more = 0
        self._alone = 0
        self._held = 0
        self._windows: list[DigestSummary] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._recipient = flood.recipient  # of the latest notice taken: the policy's address now
        self._window_limit = flood.limit  # the limit of the window (for the digest's text)

    @workflow.signal(name="admit")
    def admit(self, request: AdmitInput) -> None:
        if request.key in self._known or any(r.key == request.key for r in self._inbox):
            return  # the same notice again (a retry): already taken care of
        self._inbox.append(request)

    @workflow.query(name="entries")
    def entries(self) -> list[DigestEntry]:
        """The notices of the open window."""
        return list(self._entries)

    @workflow.query(name="windows")
    def windows(self) -> list[DigestSummary]:
        """The windows closed so far in this run."""
        return list(self._windows)

    def _send_alone(self, request: AdmitInput) -> None:
        async def send() -> None:
            try:
                await workflow.execute_activity_method(
                    TicketActivityInterface.notify,
                    request.notice,
                    activity_id=request.key,
                    summary=f"{request.event.type} -> {self._flood.endpoint.name} (within the flood limit)",
                    **SEND_OPTIONS,
                )
            except Exception as exc:  # given up (retry window over, or refused): logged and counted
                workflow.logger.error(
                    "notice %s not delivered: %s",
                    request.key,
                    exc,
                    extra={"kind": "notification_failed", "key": request.key, "flood_control": self._flood.flood_key},
                )
                metrics.flood_notice_failed(request.event.type, self._flood.endpoint.name)

        task = asyncio.create_task(send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _take(self) -> None:
        while self._inbox:
            request = self._inbox.pop(0)
            if request.key in self._known:
                continue  # the same notice again (a retry): already taken care of
            self._known.add(request.key)
            self._seen.append(request.key)
            if request.notice.recipient is not None:
                self._recipient = request.notice.recipient
            if len(self._seen) > MAX_KEYS:
                self._known.discard(self._seen.pop(0))
            alone = self._alone < self._limit(request)
            if alone:
                self._alone += 1
                self._send_alone(request)
            else:
                self._held += 1
            if len(self._entries) < MAX_LISTED:
                self._entries.append(DigestEntry(key=request.key, event=request.event, sent=alone))
            else:
                self._more += 1

    def _limit(self, request: AdmitInput) -> int:
        """The limit the ticket's policy gives now (carried by the notice), else the starting one."""
        limit = self._flood.limit
        if request.flood is not None and request.flood.limit != limit:
            limit = request.flood.limit
        self._window_limit = limit
        return limit

    def _window_length(self) -> timedelta:
        """Of the window the first waiting notice opens: the policy's now, else the starting one."""
        window = self._flood.window
        opener = self._inbox[0].flood if self._inbox else None
        if opener is not None and opener.window != window:
            window = opener.window
        return window

    async def _window(self) -> None:
        flood = self._flood
        start = workflow.now()
        end = start + self._window_length()
        self._window_limit = flood.limit
        digest_id = f"{workflow.info().workflow_id}-{start:%Y%m%dT%H%M%S}"
        self._entries, self._more, self._alone, self._held = [], 0, 0, 0
        while workflow.now() < end:
            self._take()
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: bool(self._inbox), timeout=end - workflow.now(), timeout_summary="flood window ends"
                )
        self._take()  # what arrived with the timer still belongs to this window
        delivered = False
        if self._held:
            # The recipient of the window's latest notice: the policy may have moved the person.
            recipient = self._recipient
            window = DigestInput(
                digest_id=digest_id,
                flood_key=flood.flood_key,
                channel=flood.channel,
                endpoint=flood.endpoint,
                recipient=recipient,
                limit=self._window_limit,
                start=start,
                end=end,
            )
            try:
                await workflow.execute_activity_method(
                    TicketActivityInterface.send_digest,
                    DigestDeliverInput(digest=window, entries=self._entries, more=self._more),
                    activity_id=digest_id,
                    summary=f"digest of {len(self._entries) + self._more} notices -> {flood.endpoint.name}",
                    **SEND_OPTIONS,
                )
                delivered = True
            except Exception as exc:
                workflow.logger.error(
                    "digest %s not delivered: %s",
                    digest_id,
                    exc,
                    extra={"kind": "notification_failed", "key": digest_id, "flood_control": flood.flood_key},
                )
                metrics.flood_notice_failed("digest", flood.endpoint.name)
        self._windows.append(
            DigestSummary(
                digest_id=digest_id,
                admitted=len(self._entries) + self._more,
                sent_alone=self._alone,
                digested=self._held,
                delivered=delivered,
            )
        )
        self._entries = []

    @workflow.run
    async def run(self, flood: FloodInput) -> list[DigestSummary]:
        await workflow.wait_condition(lambda: bool(self._inbox))
        while True:
            while self._inbox:
                await self._window()
                # Not with notices in the inbox (admitted while the digest went out): they would be
                # lost; the next window takes them and the check comes again.
                if workflow.info().is_continue_as_new_suggested() and not self._sending and not self._inbox:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    carried = flood.model_copy(update={"seen": self._seen})
                    workflow.continue_as_new(carried)
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: bool(self._inbox), timeout=max(LINGER, flood.window), timeout_summary="idle"
                    )
            # Idle: end once the notices sent on their own are settled; one admitted meanwhile (they
            # may be retried for days) opens a new window instead of being dropped.
            await workflow.wait_condition(lambda: not self._sending or bool(self._inbox))
            if self._inbox:
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._inbox:
                continue  # admitted in the very task that was to end it
            return self._windows
