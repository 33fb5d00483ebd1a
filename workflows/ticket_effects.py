"""How a ticket's decisions take effect: applied to the state, logged, sent, slept on, published.

Applies the decisions of `workflows/decisions.py` and runs their effects: the policy loaded at the
start (a local activity, frozen in history), one activity try per outbox notice, one timer for the
nearest due time, the search attributes published once per workflow task. It decides nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, cast

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

import workflows.decisions as decisions
import workflows.summary as summary
import workflows.ticket_views as views
import workflows.timers as timers
from workflows.activity_interfaces import (
    ActivityOptions,
    LocalActivityOptions,
    TicketActivityInterface,
)
from workflows.decision_types import Action, Decision, Delivery, Input, Tick
from workflows.messages import (
    DeliverInput,
    DeliveryResult,
    LoadPolicyInput,
    ReassignInput,
    ReassignResult,
)
from workflows.models import (
    TimelineEvent,
)
from workflows.state import Carried, Notice, PolicyRef
from workflows.ticket_store_sync import TicketStoreSync

# Each try of a notice is one activity attempt: the workflow itself retries with backoff, so an
# undelivered notice is visible on the ticket while it waits (see outbox.backoff).
DELIVERY_OPTIONS = ActivityOptions(
    start_to_close_timeout=timedelta(seconds=15),
    retry_policy=RetryPolicy(maximum_attempts=1),
)
# Loading the policy never gives up: a ticket waits (visibly, in the worker's log and the
# pending local activity) rather than failing. The worker keeps the last good policy file.
POLICY_OPTIONS = LocalActivityOptions(
    start_to_close_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
)
_UNSET = object()
_LOGGED_AT_INFO = frozenset(
    {
        "routed",
        "sla_breached",
        "escalated",
        "reassigned",
        "resolved",
        "reopened",
        "approval_timed_out",
    }
)

_LOGGED_AT_WARNING = frozenset(
    {"action_rejected", "notification_undelivered", "notification_failed", "notifications_dropped", "internal_error"}
)


class TicketEffects(TicketStoreSync):
    """Applies decisions and runs their effects; `TicketEscalation.run` drives it."""

    # ------------------------------------------------------------------ applying decisions
    async def _load_policy_and_open(self) -> None:
        # A local activity: its result (the policy and its version) is recorded in history as a
        # marker. A method of its own so the raw snapshot does not live on in `run`'s frame.
        # The contract: the clocks start at `opened_at`, else at the workflow's start time (not at
        # its first task, which a busy worker may run seconds later).
        started = workflow.info().workflow_start_time
        requested_at = workflow.now()
        snapshot = await workflow.execute_local_activity_method(
            TicketActivityInterface.load_policy,
            LoadPolicyInput(opened_at=self._ticket.opened_at or started, requested_at=requested_at),
            **POLICY_OPTIONS,
        )
        self._policy_ref = PolicyRef(
            version=snapshot.version,
            fingerprint=snapshot.fingerprint,
            document=snapshot.document,
            store_events=snapshot.store_events,
        )
        # No timer before the first decision: `workflow.now()` after a local activity that spanned
        # several workflow tasks can differ between the live run and a replay, so until the loop
        # first waits every decision and effect takes the workflow's start time instead (`_now`).
        self._opening_at = started
        # The passes of the loop that follow without a wait, and the actions decided meanwhile, run
        # at the time the policy loaded, as its result records it (held by `_wait` and `_arrival`).
        # Neither this task's time nor the one after the result: which task goes on after the result,
        # and at what time, differs between a live run and its replay (a worker without a cache, or
        # one that re-runs the load after a crash). A deadline passed since is handled by the next
        # task. Results without the time (tickets opened before) replay at the task's time, as ran.
        if snapshot.loaded_at is not None:
            self._loaded_at = max(snapshot.loaded_at, started)
        self._store_start()
        self._apply(decisions.open_ticket(self.policy, snapshot.version, self._ticket, self._ctx()))
        if self._carried_refused is not None:
            self._append_row(
                TimelineEvent(
                    at=self._now(),
                    kind="carried_state_refused",
                    detail={
                        "reason": "a carried state is taken only from this ticket's own continue-as-new",
                        "given": self._carried_refused,
                    },
                )
            )
            workflow.logger.warning(
                "ticket %s: carried state from outside ignored",
                self._ticket.ticket_id,
                extra={"ticket_id": self._ticket.ticket_id, "kind": "carried_state_refused"},
            )
        self._metrics.opened(self._ticket.channel, self.state)

    def _decide(self, event: Input) -> Decision:
        if getattr(event, "input", None) == "action":
            # Time first: a deadline that passed before the action arrived (its timer's task not run
            # yet, or the ticket's first task late) is breached before the action is applied, so a
            # late first response still counts its breach and sends its notices.
            if self._timer_due():
                self._apply(decisions.decide(self.state, self.policy, self._ticket, Tick(), self._ctx()))
            if self._store_wanted():
                self._record_action(event)  # type: ignore[arg-type]
        decision = decisions.decide(self.state, self.policy, self._ticket, event, self._ctx())
        self._apply(decision)
        return decision

    @contextlib.contextmanager
    def _arrival(self) -> Iterator[None]:
        """The time of an action from a handler: its own task's, never the opening's start time.
        In the task that opens a new ticket (its policy's result says how long the load took), the
        time the policy loaded, as the loop's passes there: the same live and on replay."""
        opening, held = self._opening_at, self._held_at
        self._opening_at = None
        self._held_at = self._loaded_at if opening is not None or held is not None else None
        try:
            yield
        finally:
            self._opening_at, self._held_at = opening, held

    def _decide_on_arrival(self, action: Action) -> Decision:
        with self._arrival():
            return self._decide(action)

    def _own_time(self) -> None:
        """Before a wait outside `_wait`: whatever is decided after it, at its own task's time."""
        self._held_at = None
        if self._loaded_at is not None:  # (tickets opened before: unchanged)
            self._opening_at = None

    def _apply(self, decision: Decision) -> None:
        before, self._state = self._state, decision.state
        self._metrics.decided(before, decision.state, decision.events, decision.effects)
        if decision.events and self._store_wanted():
            self._recorder.record_events(
                decision.events,
                before.tier if before else None,
                before.department if before else None,
                decision.state,
                self._policy_version(),
                self._now(),
            )
        for event in decision.events:
            self._timeline.append(event)
            if event.kind in _LOGGED_AT_WARNING:
                log = workflow.logger.warning
            elif event.kind in _LOGGED_AT_INFO:
                log = workflow.logger.info
            else:
                log = workflow.logger.debug
            log(
                "ticket %s: %s",
                self._ticket.ticket_id,
                event.kind,
                extra={"ticket_id": self._ticket.ticket_id, "kind": event.kind, "detail": event.detail},
            )
        # Deadlines or the outbox may have changed: the loop plans again, and publishes the search
        # attributes once for all the decisions of this task (each upsert is a history event).
        self._woken = True

    # ------------------------------------------------------------------ the loop's pieces
    def _next_due(self) -> tuple[datetime, str] | None:
        try:
            due = timers.next_due(self.state, self.policy)
        except Exception as exc:  # a bug in timing must not wedge the ticket: look again in an hour
            self._apply(
                Decision(
                    self.state.model_copy(update={"internal_errors": self.state.internal_errors + 1}),
                    [
                        TimelineEvent(
                            at=self._now(),
                            kind="internal_error",
                            detail={"input": "next_due", "error": repr(exc)[:300]},
                        )
                    ],
                    [],
                )
            )
            due = (self._now() + timedelta(hours=1), "retry after an internal error")
        retries = [n.next_attempt_at for n in self.state.outbox if self._waiting(n)]
        if retries and (due is None or min(retries) < due[0]):
            due = (min(retries), "retry undelivered notices")
        flush = self._recorder.due() if self._store_on else None
        if flush is not None and (due is None or flush < due[0]):
            due = (flush, "store events")
        return due

    def _timer_due(self) -> bool:
        return timers.tick_due(self.state, self.policy, self._now())

    def _waiting(self, notice: Notice) -> bool:
        return notice.status != "failed" and notice.key not in self._in_flight

    def _start_deliveries(self) -> None:
        # Tries due within the next second go now: no sub-second timers, fewer history events.
        soon = self._now() + timedelta(seconds=1)
        for notice in self.state.outbox:
            if self._waiting(notice) and notice.next_attempt_at <= soon:
                self._in_flight.add(notice.key)
                task = asyncio.create_task(self._deliver(notice), name=f"deliver {notice.key}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, notice: Notice) -> None:
        request = notice.deliver if notice.deliver is not None else notice.reassign
        activity_id = f"{notice.key}#{notice.attempts + 1}"
        label = f"{notice.type} -> {notice.endpoint} (try {notice.attempts + 1})"
        try:
            result: DeliveryResult | ReassignResult
            if notice.activity == "reassign":
                result = await workflow.execute_activity_method(
                    TicketActivityInterface.reassign,
                    cast(ReassignInput, request),
                    activity_id=activity_id,
                    summary=label,
                    **DELIVERY_OPTIONS,
                )
            else:
                send = (
                    TicketActivityInterface.notify
                    if notice.activity == "notify"
                    else TicketActivityInterface.cc_department_heads
                )
                result = await workflow.execute_activity_method(
                    send, cast(DeliverInput, request), activity_id=activity_id, summary=label, **DELIVERY_OPTIONS
                )
            detail: dict[str, Any] = {"outcome": result.outcome} if isinstance(result, ReassignResult) else {}
            if isinstance(result, DeliveryResult) and result.digest:
                detail = {"flood_control": result.digest}  # the recipient's window sends it (or its digest)
            outcome = Delivery(notice.key, ok=True, detail=detail)
        except ActivityError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            final = isinstance(cause, ApplicationError) and cause.non_retryable
            pause = cause.next_retry_delay if isinstance(cause, ApplicationError) else None
            outcome = Delivery(notice.key, ok=False, error=message, final=final, retry_after=pause)
        finally:
            self._in_flight.discard(notice.key)
        self._metrics.delivery(notice, outcome.ok, self._decide(outcome).events)
        self._woken = True

    def _settled(self) -> bool:
        return not self._in_flight and workflow.all_handlers_finished()

    def _carried(self) -> Carried:
        assert self._policy_ref is not None
        store = self._recorder.carry() if self._store_on else None
        return Carried(policy=self._policy_ref, state=self.state, runs=self._runs, store=store)

    async def _wait(self, due: tuple[datetime, str] | None) -> None:
        now = self._now()
        if due is not None and due[0] <= now:
            if self._timer_due():
                return
            # Past due but nothing to fire (the reopen window passed while notices settle): wait for
            # the next retry, or for a wake-up (a delivery's outcome, an action). Never spin.
            retries = [n.next_attempt_at for n in self.state.outbox if self._waiting(n) and n.next_attempt_at > now]
            due = (min(retries), "retry undelivered notices") if retries else None
        opening = self._opening_at is not None or self._held_at is not None
        self._opening_at = None
        self._publish()  # all of this task's decisions are in: one upsert
        if due is None:  # a timer still running fires for nothing: cheaper than cancelling it
            self._hold(opening and self._woken)
            await workflow.wait_condition(lambda: self._woken)
            return
        if self._timer is None or self._timer.done() or self._timer_at != due[0]:
            timeout = due[0] - now
            if opening:
                # The first wait of a new ticket: from here on the task's own time. A deadline that
                # passed since the start is handled by the next task (a timer is always started here,
                # so the commands are the same live and on replay; only its length differs).
                timeout = max(due[0] - workflow.now(), timedelta(seconds=1))
            if self._timer is not None and not self._timer.done():
                self._timer.cancel()
            self._timer_at = due[0]
            self._timer = asyncio.create_task(self._sleep(timeout, due[1]), name="next due")
        timer = self._timer
        self._hold(opening and (self._woken or timer.done()))
        await workflow.wait_condition(lambda: self._woken or timer.done())

    def _hold(self, at_once: bool) -> None:
        """After the opening, the loop's passes run at the time the policy loaded while its waits
        return at once (same task); the first wait that really waits goes back to each task's time."""
        self._held_at = self._loaded_at if at_once else None

    @staticmethod
    async def _sleep(duration: timedelta, summary: str) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await workflow.sleep(duration, summary=summary)

    def _publish(self) -> None:
        """Mirror the ticket onto its search attributes (visible and queryable in the Web UI)."""
        self._describe()
        state = self.state
        # Where the old and new rule disagree, old tickets replay on the old one (no marker).
        pending_only = not views.next_deadline_rules_differ(state) or workflow.patched(views.NEXT_DEADLINE_PATCH)
        values = views.search_attribute_values(self._ticket, state, pending_only=pending_only)
        # Only what changed: every upsert is a history event.
        changed = [(key, value) for key, value in values if self._published.get(key.name, _UNSET) != value]
        if not changed:
            return
        updates: list[SearchAttributeUpdate[Any]] = [
            key.value_unset() if value is None else key.value_set(value) for key, value in changed
        ]
        workflow.upsert_search_attributes(updates)
        self._published.update({key.name: value for key, value in changed})

    def _describe(self) -> None:
        """The ticket's page in the Web UI (current details): no command, nothing in history."""
        try:
            version = self._policy_version()
            nearest = views.next_pending(self.state)
            workflow.set_current_details(summary.current_details(self._ticket, self.state, version, nearest))
        except Exception:  # a description must never fail a workflow task
            pass
