"""The Temporal side of a ticket: applies the decisions of `workflows/decisions.py` and runs their effects.

Imported by `workflows/ticket.py` through the sandbox's passthrough, so it is loaded once per
worker process, not once per ticket; `TicketEscalation` inherits the handlers defined here.
Passthrough code is not policed by the sandbox, so the rules are on us and on the replay tests:
deterministic only, time from `workflow.now()` (through `_now`), no I/O, no randomness, no mutable module state.

What this class promises, whatever arrives:
- every signal and update, with any argument (none, null, bytes, wrong types, megabytes), is
  answered: an update by its status or an `ActionRejected` error `{field, reason}`, a signal by a
  change or a refusal on the timeline. Handlers never raise anything but `ApplicationError`, so no
  input can fail a workflow task;
- side effects wait in the ticket's outbox (carried across continue-as-new) until delivered;
- search-attribute values are bounded before they are upserted (the server ends a workflow whose
  upsert is too large).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

import workflows.decisions as decisions
import workflows.recording as recording
import workflows.search_attributes as sa
import workflows.sla as sla
import workflows.summary as summary
import workflows.timers as timers
from config.policy import Policy, policy_from_snapshot
from workflows.decision_types import Action, Ctx, Decision, Delivery, Input, Refusal, Tick, Undecodable
from workflows.messages import DeliveryResult, LoadPolicyInput, PolicySnapshot, ReassignResult, StoreBatch, StoreResult
from workflows.metrics import TicketMetrics
from workflows.models import (
    ACTIONS,
    DIGEST_MARK,
    MAX_ACTION_BYTES,
    MAX_REPORTED_REFUSALS,
    OPENED_AT_RANGE,
    REFUSAL_SIGNAL,
    NoticeStatus,
    RefusalReport,
    Ticket,
    TicketStatus,
    TicketSummary,
    Timeline,
    TimelineEvent,
)
from workflows.state import Carried, Notice, PolicyRef, TicketState

# Each try of a notice is one activity attempt: the workflow itself retries with backoff, so an
# undelivered notice is visible on the ticket while it waits (see outbox.backoff).
DELIVERY_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=15),
    "retry_policy": RetryPolicy(maximum_attempts=1),
}
# Loading the policy never gives up: a ticket waits (visibly, in the worker's log and the
# pending local activity) rather than failing. The worker keeps the last good policy file.
POLICY_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=1)),
}
# Writing the ticket's record never gives up either: a database outage delays the record, the
# ticket goes on meanwhile, and it completes only once everything is stored (see `recording.py`).
STORE_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)),
}
# The write of a finished ticket's last events and summary: a local activity, in the same workflow
# task as its last notice's outcome, so the ticket ends without one more activity and task (and its
# batch stays out of history: a local activity records only its result). After a few seconds of
# failures its retries wait on timers, so a database outage holds no workflow task open.
FINAL_STORE_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)),
    "local_retry_threshold": timedelta(seconds=5),
}
NOT_OPENED = "the ticket has not been opened yet; its policy is loading"
KEYWORD_MAX_BYTES = 255
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

# The SDK would append the whole workflow info to every message; it is in the record's extra already.
workflow.logger.workflow_info_on_message = False


def bounded_keyword(value: str | None) -> str | None:
    """Cut a keyword search-attribute value to at most 255 UTF-8 bytes, on a character boundary."""
    if value is None:
        return None
    data = value.encode()
    if len(data) <= KEYWORD_MAX_BYTES:
        return value
    return data[:KEYWORD_MAX_BYTES].decode(errors="ignore")


class TicketRunner:
    """State, handlers and effects of one ticket; `TicketEscalation` adds the main loop."""

    def __init__(self, ticket: Ticket | dict[str, Any], carried: Any = None) -> None:
        # The input arrives as a `Ticket`, or as plain data when it does not validate (the type hint
        # is a union on purpose): a new ticket is then refused by `run` with the field and the
        # reason, and a continued one, valid under the rules it was opened with, runs on as it is.
        # No validation error can escape into the SDK, where it would fail the ticket's tasks forever.
        self._invalid: str | None = None
        if isinstance(ticket, Ticket):
            self._ticket = ticket
        else:
            try:
                self._ticket = Ticket.model_validate(ticket)
            except ValidationError as exc:
                first = exc.errors()[0]
                self._invalid = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
                self._ticket = Ticket.model_construct(**(ticket if isinstance(ticket, dict) else {}))
        # The carried state is internal: only a run started by continue-as-new may take it. From
        # anywhere else (a raw start with a second argument, a forged input) it is ignored and
        # recorded on the timeline once the ticket opened: it could name any endpoint.
        opened_at = self._ticket.opened_at if self._invalid is None else None
        if (
            carried is None
            and isinstance(opened_at, datetime)
            and not OPENED_AT_RANGE[0] <= opened_at < OPENED_AT_RANGE[1]
        ):
            # Near the ends of the calendar the SLA and holiday arithmetic overflows.
            low, high = (bound.date().isoformat() for bound in OPENED_AT_RANGE)
            self._invalid = f"opened_at: must lie between {low} and {high}"
        self._carried_refused: str | None = None
        if carried is not None and not workflow.info().continued_run_id:
            self._carried_refused = type(carried).__name__
            carried = None
        if carried is not None and not isinstance(carried, Carried):
            carried = Carried.model_validate(carried)
        self._policy_ref: PolicyRef | None = carried.policy if carried else None
        self._policy: Policy | None = None
        self._state: TicketState | None = carried.state if carried else None
        self._runs = carried.runs + 1 if carried else 1
        self._timeline: list[TimelineEvent] = []
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._woken = False  # set by actions and deliveries: re-plan now
        self._published: dict[str, Any] = {}
        self._reported = 0  # refusals reported by clients in this run (`record_refusal`)
        self._metrics = TicketMetrics()  # metrics only: no history, nothing decided from it
        # The record store: events are numbered and kept here until stored (see `recording.py`).
        self._recorder = recording.Recorder(carried.store if carried else None, self._runs)
        self._store_on = False
        # The time of the opening task: set while the new ticket is opened, so that everything
        # decided before its first wait is decided at the workflow's start time, live and on replay.
        self._opening_at: datetime | None = None
        # One timer for the nearest due time, kept while that time stays the nearest (an action or
        # a delivery that changes nothing due does not cancel and re-arm it: two events each).
        self._timer: asyncio.Task[None] | None = None
        self._timer_at: datetime | None = None

    # ------------------------------------------------------------------ accessors
    @property
    def state(self) -> TicketState:
        if self._state is None:
            raise ApplicationError(NOT_OPENED, type="NotOpened")
        return self._state

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            ref = self._policy_ref
            if ref is None:
                raise ApplicationError(NOT_OPENED, type="NotOpened")
            self._policy = policy_from_snapshot(ref.fingerprint, ref.document)
        return self._policy

    def _now(self) -> datetime:
        return self._opening_at or workflow.now()

    def _opened(self) -> bool:
        return self._state is not None

    def _ctx(self) -> Ctx:
        info = workflow.info()
        return Ctx(
            now=self._now(),
            workflow_id=info.workflow_id,
            life=info.first_execution_run_id or info.run_id,
            patched=workflow.patched,
        )

    # ------------------------------------------------------------------ applying decisions
    async def _load_policy_and_open(self) -> None:
        # A local activity: its result (the policy and its version) is recorded in history as a
        # marker. A method of its own so the raw snapshot does not live on in `run`'s frame.
        # The contract: the clocks start at `opened_at`, else at the workflow's start time (not at
        # its first task, which a busy worker may run seconds later).
        started = workflow.info().workflow_start_time
        snapshot: PolicySnapshot = await workflow.execute_local_activity(
            "load_policy",
            LoadPolicyInput(opened_at=self._ticket.opened_at or started),
            result_type=PolicySnapshot,
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
        self._store_start()
        self._apply(decisions.open_ticket(self.policy, snapshot.version, self._ticket, self._ctx()))
        if self._carried_refused is not None:
            self._timeline.append(
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

    def _decide_on_arrival(self, action: Action) -> Decision:
        """An action from a handler: decided at its own task's time, never at the opening's."""
        opening, self._opening_at = self._opening_at, None
        try:
            return self._decide(action)
        finally:
            self._opening_at = opening

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
        result_type: type[Any] = ReassignResult if notice.activity == "reassign" else DeliveryResult
        try:
            result = await workflow.execute_activity(
                notice.activity,
                request,
                activity_id=f"{notice.key}#{notice.attempts + 1}",
                summary=f"{notice.type} -> {notice.endpoint} (try {notice.attempts + 1})",
                result_type=result_type,
                **DELIVERY_OPTIONS,
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

    # ------------------------------------------------------------------ the record store
    def _store_wanted(self) -> bool:
        ref = self._policy_ref
        return ref is not None and ref.store_events

    def _policy_version(self) -> str:
        return self._policy_ref.version if self._policy_ref else ""

    def _store_start(self) -> None:
        """At the first task of a run: write the record store from here on (policy setting on)."""
        self._store_on = self._store_wanted()

    def _store_ready_to_finish(self) -> bool:
        return not self._store_on or not self._recorder.waiting(final=True)

    def _store_ready_to_continue(self) -> bool:
        if not self._store_on or not self._recorder.waiting(final=False):
            return True
        return self._recorder.may_carry(self._now())

    def _record_action(self, action: Action) -> None:
        undecodable = getattr(action.data, "undecodable", False)
        self._recorder.record_action(
            action.name,
            None if undecodable else action.data,
            action.via,
            action.key,
            self._state,
            self._policy_version(),
            self._now(),
            undecodable=action.data.error if undecodable else None,
        )

    def _start_flush(self, *, force: bool = False, final: bool = False) -> None:
        """Hand the next batch of events (and the summary row) to one `store_events` activity."""
        rec, now = self._recorder, self._now()
        if not self._store_on or self._state is None or not rec.should_flush(now, force):
            return
        if not rec.pending and not final:
            return
        info = workflow.info()
        first = rec.pending[0].seq if rec.pending else rec.next_seq
        record = recording.ticket_record(
            self._ticket,
            self.state,
            life=info.first_execution_run_id or info.run_id,
            workflow_id=info.workflow_id,
            opened_at=rec.opened_at or self._ticket.opened_at or info.start_time,
            policy_version=self._policy_version(),
            complete=rec.complete,
            with_ticket=first == 0,
            closed_at=now if final else None,
            summary=self._summary().model_dump(mode="json") if final else None,
        )
        batch = rec.take(record, now)
        task = asyncio.create_task(self._flush(batch, final), name=f"store {batch.first_seq}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: StoreBatch, final: bool) -> None:
        summary = f"store events {batch.first_seq}..{batch.first_seq + len(batch.events) - 1}"
        try:
            if final:
                await workflow.execute_local_activity(
                    "store_events", batch, summary=summary, result_type=StoreResult, **FINAL_STORE_OPTIONS
                )
            else:
                await workflow.execute_activity(
                    "store_events", batch, summary=summary, result_type=StoreResult, **STORE_OPTIONS
                )
            self._recorder.stored(batch, self._now())
        except ActivityError as err:  # only a non-retryable failure ends up here: try again later
            workflow.logger.warning("ticket %s: store_events failed: %s", self._ticket.ticket_id, err.cause or err)
            self._recorder.failed(self._now())
        finally:
            self._woken = True

    async def _wait(self, due: tuple[datetime, str] | None) -> None:
        now = self._now()
        if due is not None and due[0] <= now:
            if self._timer_due():
                return
            # Past due but nothing to fire (the reopen window passed while notices settle): wait for
            # the next retry, or for a wake-up (a delivery's outcome, an action). Never spin.
            retries = [n.next_attempt_at for n in self.state.outbox if self._waiting(n) and n.next_attempt_at > now]
            due = (min(retries), "retry undelivered notices") if retries else None
        opening, self._opening_at = self._opening_at is not None, None
        self._publish()  # all of this task's decisions are in: one upsert
        if due is None:  # a timer still running fires for nothing: cheaper than cancelling it
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
        await workflow.wait_condition(lambda: self._woken or timer.done())

    @staticmethod
    async def _sleep(duration: timedelta, summary: str) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await workflow.sleep(duration, summary=summary)

    def _publish(self) -> None:
        """Mirror the ticket onto its search attributes (visible and queryable in the Web UI)."""
        self._describe()
        s = self.state
        deadlines = [c.deadline for c in s.clocks.values() if sla.is_running(c) and c.deadline]
        values: list[tuple[SearchAttributeKey[Any], Any]] = [
            (sa.TICKET_TIER, s.tier),
            (sa.TICKET_STATE, s.state.value),
            (sa.TICKET_PRIORITY, s.priority.value),
            (sa.TICKET_CHANNEL, self._ticket.channel.value),
            (sa.TICKET_CATEGORY, bounded_keyword(self._ticket.category)),
            (sa.TICKET_DEPARTMENT, bounded_keyword(s.department)),
            (sa.TICKET_ASSIGNEE, bounded_keyword(s.assignee)),
            (sa.SLA_BREACHED, s.breaches > 0),  # sticky: it breached at some tier
            (sa.ESCALATION_COUNT, s.escalations),
            (sa.NEXT_SLA_DEADLINE, min(deadlines, default=None)),
            (sa.UNDELIVERED_NOTICES, sum(1 for n in s.outbox if n.status != "pending")),
        ]
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
            s = self.state
            running = [(c.deadline, n.value) for n, c in s.clocks.items() if sla.is_running(c) and c.deadline]
            version = self._policy_ref.version if self._policy_ref else ""
            workflow.set_current_details(summary.current_details(self._ticket, s, version, min(running, default=None)))
        except Exception:  # a description must never fail a workflow task
            pass

    # ------------------------------------------------------------------ results
    def current_status(self) -> TicketStatus:
        s, now, policy = self.state, self._now(), self.policy
        clocks = [sla.status(c, policy.calendars[c.calendar], now) for c in s.clocks.values()]
        running = [c.deadline for c in clocks if c.state == "running" and c.deadline]
        undelivered = [n for n in s.outbox if n.status != "pending"]
        return TicketStatus(
            ticket_id=self._ticket.ticket_id,
            workflow_id=workflow.info().workflow_id,
            state=s.state,
            tier=s.tier,
            department=s.department,
            assignee=s.assignee,
            queue=s.queue,
            priority=s.priority,
            clocks=clocks,
            next_deadline=min(running, default=None),
            sla_breached=s.breaches > 0,
            escalation_count=s.escalations,
            policy_version=self._policy_ref.version if self._policy_ref else "",
            route=s.route.route,
            pending_approvals=[a for a in s.approvals if a.status == "pending"],
            undelivered_count=len(undelivered),
            undelivered=[
                NoticeStatus(
                    key=n.key,
                    type=n.type,
                    endpoint=n.endpoint,
                    status=n.status,
                    attempts=n.attempts,
                    last_error=n.last_error,
                    next_attempt_at=n.next_attempt_at if n.status != "failed" else None,
                    give_up_at=n.give_up_at,
                )
                for n in undelivered[:20]
            ],
            refused_actions=s.refused,
            internal_errors=s.internal_errors,
            notices_dropped=s.dropped,
        )

    def _summary(self) -> TicketSummary:
        s = self.state
        opened = self._ticket.opened_at or workflow.info().start_time
        return TicketSummary(
            ticket_id=self._ticket.ticket_id,
            final_state=s.state,
            tiers_visited=s.tiers_visited,
            departments_visited=s.departments_visited,
            escalations=s.escalations,
            breaches=s.breaches,
            time_to_first_response=(s.first_response_at - opened) if s.first_response_at else None,
            time_to_resolution=(s.resolved_at - opened) if s.resolved_at else None,
            policy_version=self._policy_ref.version if self._policy_ref else "",
            refused_actions=s.refused,
            notices_delivered=s.delivered,
            notices_failed=sum(1 for n in s.outbox if n.status == "failed"),
            notices_dropped=s.dropped,
        )

    # ------------------------------------------------------------------ the contract's handlers
    # Every action is a signal and an update of the same name (the contract). Dynamic handlers take
    # the raw arguments, so that no payload can fail in the SDK's decoding before we see it.
    @workflow.signal(dynamic=True)
    async def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        await workflow.wait_condition(self._opened)
        if name == REFUSAL_SIGNAL:
            self._record_refusal(args)
            return
        try:
            action = Action(name, _decode(args), via="signal")
            _log_action(self._ticket.ticket_id, action, self._decide_on_arrival(action))
        except Exception as exc:  # decide never raises; this guards the glue around it
            workflow.logger.error("signal %s not applied: %r", name, exc, extra={"ticket_id": self._ticket.ticket_id})

    @workflow.update(dynamic=True)
    async def on_update(self, name: str, args: Sequence[RawValue]) -> TicketStatus:
        await workflow.wait_condition(self._opened)
        try:
            update = workflow.current_update_info()
            key, digest = _split_key(update.id) if update else (None, None)
            action = Action(name, _decode(args), via="update", key=key, digest=digest)
            decision = self._decide_on_arrival(action)
            _log_action(self._ticket.ticket_id, action, decision)
            if decision.refusal is not None:
                raise _rejected(decision.refusal)
            return self.current_status()
        except ApplicationError:
            raise
        except Exception as exc:  # never fail the workflow task: fail only this update
            raise _rejected(Refusal("internal", f"{type(exc).__name__}: {exc}"[:300])) from None

    @on_update.validator
    def validate_update(self, name: str, args: Sequence[RawValue]) -> None:
        """Refuse before anything reaches history: unknown actions, oversized or malformed payloads.

        What the ticket's state or the policy refuses is decided by the handler instead, so that
        the refusal is recorded on the timeline."""
        size = sum(a.payload.ByteSize() for a in args)
        if size > MAX_ACTION_BYTES:
            refusal = Refusal("payload", f"{size} bytes; an action takes at most {MAX_ACTION_BYTES}")
            _log_action(self._ticket.ticket_id, Action(name, None), refusal)
            self._metrics.refused(name, "payload", "update")
            raise _rejected(refusal, recorded=False)
        data = _decode(args)
        parsed = decisions.parse_action(name, data)
        if isinstance(parsed, Refusal):
            _log_action(self._ticket.ticket_id, Action(name, data), parsed)
            self._metrics.refused(name, parsed.field, "update")
            raise _rejected(parsed, recorded=False)

    def _record_refusal(self, args: Sequence[RawValue]) -> None:
        """A `refused` row on the timeline, nothing else: no state change, no wake-up, no command.

        Bounded per run (`MAX_REPORTED_REFUSALS`); a report that does not validate is only logged."""
        try:
            report = RefusalReport.model_validate(_decode(args))
        except Exception as exc:
            workflow.logger.warning(
                "refusal_report.ignored", extra={"ticket_id": self._ticket.ticket_id, "error": str(exc)[:300]}
            )
            return
        self._reported += 1
        if self._reported > MAX_REPORTED_REFUSALS:
            if self._reported == MAX_REPORTED_REFUSALS + 1:
                self._timeline.append(
                    TimelineEvent(
                        at=self._now(),
                        kind="refusals_not_recorded",
                        detail={"why": f"more than {MAX_REPORTED_REFUSALS} refusals reported in this run"},
                    )
                )
            return
        actor = report.actor
        self._timeline.append(
            TimelineEvent(
                at=self._now(),
                kind="refused",
                actor=f"{actor.role.value}:{actor.id}" if actor else "unknown",
                detail={
                    "action": report.action,
                    "field": report.field,
                    "reason": report.reason,
                    "via": report.via,
                    "update_id": report.update_id,
                    "recorded_by": "client report (the ticket did not see the action)",
                },
            )
        )

    @workflow.query(name="status")
    def status(self) -> TicketStatus:
        return self.current_status()

    @workflow.query(name="applied")
    def applied(self, update_id: str) -> bool:
        """Was an action applied under this update id, in this run or one before it (the last 64
        keys are carried)? The API asks it before a webhook's action, so that a replay is refused
        also after continue-as-new. A query: nothing in history, no patch."""
        if self._state is None or not isinstance(update_id, str):
            return False
        return update_id in self._state.applied_keys

    @workflow.query(name="timeline")
    def timeline(self) -> Timeline:
        return Timeline(ticket_id=self._ticket.ticket_id, events=list(self._timeline), earlier_runs=self._runs - 1)


def _split_key(update_id: str) -> tuple[str, str | None]:
    """The idempotency key and the body's fingerprint of an update id.

    An update id may end with `#sha256:<16 hex>`, the fingerprint of the action's body (the API and
    the CLI send one with every idempotency key); the key is what comes before it, so the same key
    with another body is refused instead of answered as applied (`decision_types.Action.digest`)."""
    key, mark, digest = update_id.rpartition(DIGEST_MARK)
    if not mark or not key or len(digest) != 16 or digest.strip("0123456789abcdef"):
        return update_id, None
    return key, digest


def _decode(args: Sequence[RawValue]) -> Any:
    """The first argument as plain JSON data (None when there is none), or `Undecodable`."""
    if not args:
        return None
    if len(args) > 1:
        return Undecodable(f"expected one argument, got {len(args)}")
    try:
        return workflow.payload_converter().from_payload(args[0].payload)
    except Exception as exc:
        return Undecodable(f"{type(exc).__name__}: {exc}")


def _log_action(ticket_id: str, action: Action, outcome: Decision | Refusal) -> None:
    """One info line per action, accepted or refused: ticket id, action, actor, via and reason as fields.

    Only plain strings are formatted here (the sandbox thread), each bounded; never raises."""
    try:
        refusal = outcome if isinstance(outcome, Refusal) else outcome.refusal
        data = action.data if isinstance(action.data, dict) else {}
        actor = data.get("actor")
        who = None
        if isinstance(actor, dict):
            role, ident = actor.get("role"), actor.get("id")
            who = f"{role}:{ident}" if role else str(ident)
        elif isinstance(actor, str):
            who = actor
        if refusal is not None:
            reason: Any = f"{refusal.field}: {refusal.reason}"
        else:
            reason = data.get("reason") if isinstance(data.get("reason"), str) else None
        duplicate = isinstance(outcome, Decision) and outcome.duplicate
        workflow.logger.info(
            "action.refused" if refusal is not None else "action.accepted",
            extra={
                "ticket_id": ticket_id,
                "action": str(action.name)[:100],
                "actor": who[:200] if who else None,
                "via": action.via,
                "reason": reason[:500] if reason else None,
                **({"duplicate": True} if duplicate else {}),
            },
        )
    except Exception:  # a log line must never fail a handler
        pass


def _rejected(refusal: Refusal, *, recorded: bool | None = None) -> ApplicationError:
    """`recorded=False` (the validator: nothing reaches history) tells the client to report the
    refusal with the `record_refusal` signal, so that it is on the timeline after all."""
    details: dict[str, Any] = {"field": refusal.field, "reason": refusal.reason}
    if recorded is not None:
        details["recorded"] = recorded
    return ApplicationError(str(refusal), details, type="ActionRejected", non_retryable=True)


__all__ = ["ACTIONS", "DELIVERY_OPTIONS", "NOT_OPENED", "POLICY_OPTIONS", "TicketRunner"]
