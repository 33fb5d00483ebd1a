"""What a ticket counts: business metrics derived from its decisions, emitted by `ticket_effects.py`.

Emitting a metric is not a workflow command: nothing reaches history, so no patch is needed and
replay is unaffected. The SDK's workflow meter drops every emission while a workflow replays (a
worker restart or a cache eviction never counts a breach twice); with no metrics configured in
the worker's runtime the meter is a no-op.

Labels are low-cardinality on purpose: never a ticket id, an actor, a reason text or anything else
a caller chose. Every label value is an enum of this module or a name from the policy (departments,
endpoints), checked by `name()` against a pattern and length (else `other`). Action names arrive
from outside (any signal name is accepted): only the contract's actions are labels, others `unknown`.

Imported through the sandbox's passthrough (loaded once per worker). Deterministic-safe: it reads
decisions, never changes them; its only state is a per-ticket map for the lateness histogram.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ParamSpec

from temporalio import workflow

from workflows.models import ACTIONS, TimelineEvent
from workflows.state import Notice, TicketState

PREFIX = "escalations_"
TICKETS_OPENED = PREFIX + "tickets_opened"
TICKETS_RESOLVED = PREFIX + "tickets_resolved"
SLA_BREACHES = PREFIX + "sla_breaches"
TICKET_ESCALATIONS = PREFIX + "ticket_escalations"
NOTIFICATIONS = PREFIX + "notifications"
REFUSED_ACTIONS = PREFIX + "refused_actions"
INTERNAL_ERRORS = PREFIX + "internal_errors"
BREACH_LATENESS = PREFIX + "breach_delivery_lateness_seconds"
# Activities (activities/ticket_activities.py) emit these; named here so the list is in one place.
DELIVERY_ATTEMPTS = PREFIX + "delivery_attempts"
DELIVERY_DURATION = PREFIX + "delivery_duration_seconds"
POLICY_INVALID = PREFIX + "policy_invalid"
STORE_WRITES = PREFIX + "store_writes"
HISTOGRAMS_SECONDS = (BREACH_LATENESS, DELIVERY_DURATION)

DESCRIPTIONS = {
    TICKETS_OPENED: "tickets opened, by channel, priority, first tier and department",
    TICKETS_RESOLVED: "tickets resolved, by tier and department",
    SLA_BREACHES: "SLA breaches, by clock and the tier and department that breached",
    TICKET_ESCALATIONS: "escalations, by kind (hierarchical, functional) and trigger "
    "(ladder, approval_timeout, action)",
    NOTIFICATIONS: "notice delivery outcomes: delivered, retried (a try failed, another follows), failed "
    "(given up), discarded (by an operator), dropped (outbox full)",
    REFUSED_ACTIONS: "actions refused, by action, reason class and channel (signal, update)",
    INTERNAL_ERRORS: "inputs the ticket could not decide on (recorded and refused, never wedged)",
    BREACH_LATENESS: "seconds from an SLA deadline to the delivery of the breach notice sent with it",
    DELIVERY_ATTEMPTS: "HTTP tries of a notice by endpoint and result (2xx, 4xx, 5xx, 429, unreachable, ...)",
    DELIVERY_DURATION: "seconds one HTTP try of a notice took, by endpoint",
    POLICY_INVALID: "policy file changes that failed to load (last good policy kept), and tries of a new "
    "ticket to load its policy while the worker has no valid one",
    STORE_WRITES: "tries to write a batch of a ticket's events to the record store, by result (written, failed)",
}

OTHER = "other"
_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
_INPUTS = frozenset({"tick", "delivery", "next_due"})
# Refusal fields that name a class of reason rather than a payload field.
_REASON_OF_FIELD = {
    "state": "state",
    "action": "unknown_action",
    "payload": "payload",
    "internal": "internal",
    "actor.role": "role",
}
# Fields the policy's guards refuse on (workflows/guards.py); any other field is invalid input.
_GUARD_FIELDS = frozenset(
    {"reason", "to_agent", "to_queue", "kind", "to_tier", "department", "priority", "approval_id"}
)


P = ParamSpec("P")


def _never_raises(method: Callable[P, None]) -> Callable[P, None]:
    """A metric must never fail a workflow task: a bug here is logged and the emission skipped."""

    @functools.wraps(method)
    def safe(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception as exc:
            workflow.logger.warning("metric %s not emitted: %r", method.__name__, exc)

    return safe


def name(value: object) -> str:
    """A label value from a policy name or a code constant: kept if short and plain, else `other`."""
    return value if isinstance(value, str) and _NAME.match(value) else OTHER


def action_label(value: object) -> str:
    return value if isinstance(value, str) and value in ACTIONS else "unknown"


def refusal_reason(field: object) -> str:
    """The class of a refusal, from the field it names (bounded: field names can come from input)."""
    if not isinstance(field, str):
        return "invalid"
    if field in _REASON_OF_FIELD:
        return _REASON_OF_FIELD[field]
    return "policy" if field in _GUARD_FIELDS else "invalid"


def escalation_trigger(rule: object) -> str:
    if rule is None:
        return "action"
    if isinstance(rule, str) and rule.startswith("approvals."):
        return "approval_timeout"
    return "ladder"


class TicketMetrics:
    """Per ticket: turns decisions and delivery outcomes into metric emissions.

    Created with the ticket's workflow instance; counters are made on first use (most decisions emit nothing)."""

    __slots__ = ("_counters", "_lateness", "_meter")

    def __init__(self) -> None:
        self._meter: Any = None
        self._counters: dict[str, Any] = {}
        # Breach notices queued in the same decision as their breach: notice key -> (clock, deadline).
        self._lateness: dict[str, tuple[str, datetime]] | None = None

    def _add(self, metric: str, labels: dict[str, str]) -> None:
        counter = self._counters.get(metric)
        if counter is None:
            if self._meter is None:
                self._meter = workflow.metric_meter()
            counter = self._counters[metric] = self._meter.create_counter(metric, DESCRIPTIONS[metric])
        counter.add(1, labels)

    # ------------------------------------------------------------------ decisions
    @_never_raises
    def decided(self, before: TicketState | None, after: TicketState, events: Iterable[TimelineEvent],
                effects: Iterable[Notice]) -> None:  # fmt: skip
        """Count what one decision did. `before` is None for the opening decision."""
        tier = before.tier if before is not None else after.tier
        department = before.department if before is not None else after.department
        breaches: list[tuple[str, datetime]] = []
        for event in events:
            kind, detail = event.kind, event.detail
            if kind == "tier_entered":
                tier, department = detail.get("tier", tier), detail.get("department", department)
            elif kind == "reassigned":
                department = (detail.get("to") or {}).get("department", department)
            elif kind == "sla_breached":
                clock = name(detail.get("clock"))
                self._add(SLA_BREACHES, {"clock": clock, "tier": _tier(tier), "department": name(department)})
                breaches.append((clock, event.at))
            elif kind == "escalated":
                if detail.get("kind") == "functional":
                    department = detail.get("to_department", department)
                self._add(
                    TICKET_ESCALATIONS,
                    {"kind": name(detail.get("kind")), "trigger": escalation_trigger(detail.get("rule"))},
                )
            elif kind == "action_rejected":
                self.refused(detail.get("action"), detail.get("field"), detail.get("via"))
            elif kind == "internal_error":
                what = detail.get("input")
                self._add(INTERNAL_ERRORS, {"input": what if what in _INPUTS else "action"})
            elif kind == "resolved":
                self._add(TICKETS_RESOLVED, {"tier": _tier(tier), "department": name(department)})
            elif kind == "notifications_discarded":
                for notice in detail.get("notices") or []:
                    self._notice_outcome(notice.get("type"), notice.get("endpoint"), "discarded")
            elif kind == "notifications_dropped":
                for _ in detail.get("keys") or []:
                    self._add(NOTIFICATIONS, {"type": OTHER, "endpoint": OTHER, "outcome": "dropped"})
        if breaches:
            self._track_breach_notices(breaches, effects)

    @_never_raises
    def opened(self, channel: object, state: TicketState) -> None:
        self._add(
            TICKETS_OPENED,
            {
                "channel": name(_value(channel)),
                "priority": name(_value(state.priority)),
                "tier": _tier(state.tier),
                "department": name(state.department),
            },
        )

    @_never_raises
    def refused(self, action: object, field: object, via: object) -> None:
        self._add(
            REFUSED_ACTIONS,
            {
                "action": action_label(action),
                "reason": refusal_reason(field),
                "via": "signal" if via == "signal" else "update",
            },
        )

    # ------------------------------------------------------------------ deliveries
    @_never_raises
    def delivery(self, notice: Notice, ok: bool, events: Iterable[TimelineEvent]) -> None:
        """One try of a notice ended: delivered, retried later, or given up."""
        failed = not ok and any(e.kind == "notification_failed" for e in events)
        outcome = "delivered" if ok else "failed" if failed else "retried"
        self._notice_outcome(notice.type, notice.endpoint, outcome)
        if self._lateness and outcome != "retried":
            tracked = self._lateness.pop(notice.key, None)
            if tracked is not None and ok:
                clock, deadline = tracked
                late = workflow.now() - deadline
                if late.total_seconds() >= 0:
                    self._histogram().record(late, {"clock": clock})

    def _notice_outcome(self, type_: object, endpoint: object, outcome: str) -> None:
        self._add(NOTIFICATIONS, {"type": name(type_), "endpoint": name(endpoint), "outcome": outcome})

    def _track_breach_notices(self, breaches: list[tuple[str, datetime]], effects: Iterable[Notice]) -> None:
        for notice in effects:
            if notice.type != "sla.breached" or notice.deliver is None:
                continue
            rule = notice.deliver.event.rule or ""
            for clock, deadline in breaches:
                if rule.startswith(f"ladders.{clock}["):
                    if self._lateness is None:
                        self._lateness = {}
                    if len(self._lateness) < 256:  # bounded like the outbox it shadows
                        self._lateness[notice.key] = (clock, deadline)
                    break

    def _histogram(self) -> Any:
        histogram = self._counters.get(BREACH_LATENESS)
        if histogram is None:
            if self._meter is None:
                self._meter = workflow.metric_meter()
            histogram = self._counters[BREACH_LATENESS] = self._meter.create_histogram_timedelta(
                BREACH_LATENESS, DESCRIPTIONS[BREACH_LATENESS], "s"
            )
        return histogram


def flood_notice_failed(type_: object, endpoint: object) -> None:
    """A notice (or a digest, type `digest`) that flood control gave up: the ticket recorded its
    hand-over as delivered, so only this counter (`outcome="failed"`, the `NoticesGivenUp` alert)
    and the worker's log say that it never arrived. Never raises."""
    with contextlib.suppress(Exception):
        workflow.metric_meter().create_counter(NOTIFICATIONS, DESCRIPTIONS[NOTIFICATIONS]).add(
            1, {"type": name(type_), "endpoint": name(endpoint), "outcome": "failed"}
        )


def _tier(value: object) -> str:
    return str(value) if isinstance(value, int) and 0 <= value <= 99 else OTHER


def _value(value: object) -> object:
    return getattr(value, "value", value)
