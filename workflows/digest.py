"""Flood control: one durable window per recipient (a person at an endpoint, or a chat endpoint).

`DigestWindow` (workflow id `digest-<recipient@endpoint>-<window start>`) is started, or found, by
the delivery activity with update-with-start: its `admit` update answers `now` for the first
`limit` notices of the window and `digest` for the rest, and answers a repeated key (a retried
notice) exactly as the first time. At the window's end it sends one digest (activity
`send_digest`, idempotency key = its workflow id, so a retry is the same email Message-ID / chat
block id) listing every notice of the window, those sent on their own marked as such. A notice
arriving after the window closed is answered `now`: nothing waits for a digest that has gone.

Durable: a worker killed mid-window loses nothing; the timer and the admitted notices are in the
window's history, and the digest goes out once when a worker runs it again.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.models import (
        AdmitInput,
        AdmitResult,
        DeliveryResult,
        DigestDeliverInput,
        DigestEntry,
        DigestInput,
        DigestSummary,
    )

MAX_LISTED = 500  # entries listed in one digest; beyond, counted ("... and N more")
MAX_KEYS = 5000  # keys remembered for answering retries the same way


@workflow.defn(name="DigestWindow")
class DigestWindow:
    @workflow.init
    def __init__(self, window: DigestInput) -> None:
        self._window = window
        self._entries: list[DigestEntry] = []
        self._answers: dict[str, bool] = {}  # key -> sent on its own
        self._more = 0
        self._alone = 0
        self._closed = False

    @workflow.update(name="admit")
    def admit(self, request: AdmitInput) -> AdmitResult:
        digest = self._window.digest_id
        known = self._answers.get(request.key)
        if known is not None:
            return AdmitResult(decision="now" if known else "digest", digest_id=digest)
        if self._closed or len(self._answers) >= MAX_KEYS:
            return AdmitResult(decision="now", digest_id=digest)
        alone = self._alone < self._window.limit
        self._alone += 1 if alone else 0
        self._answers[request.key] = alone
        if len(self._entries) < MAX_LISTED:
            self._entries.append(DigestEntry(key=request.key, event=request.event, sent=alone))
        else:
            self._more += 1
        return AdmitResult(decision="now" if alone else "digest", digest_id=digest)

    @workflow.query(name="entries")
    def entries(self) -> list[DigestEntry]:
        return list(self._entries)

    @workflow.run
    async def run(self, window: DigestInput) -> DigestSummary:
        wait = window.end - workflow.now()
        if wait > timedelta(0):
            await workflow.sleep(wait, summary="digest window ends")
        self._closed = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        held = sum(1 for sent in self._answers.values() if not sent)
        delivered = False
        if held:
            await workflow.execute_activity(
                "send_digest",
                DigestDeliverInput(digest=window, entries=self._entries, more=self._more),
                activity_id=window.digest_id,
                summary=f"digest of {len(self._answers)} notices -> {window.endpoint.name}",
                result_type=DeliveryResult,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(days=2),
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(minutes=10), non_retryable_error_types=["DeliveryRejected"]
                ),
            )
            delivered = True
        return DigestSummary(
            digest_id=window.digest_id,
            admitted=len(self._answers),
            sent_alone=self._alone,
            digested=held,
            delivered=delivered,
        )
