"""The ticket's outbox: notices a decision wants sent, and what their deliveries' outcomes change.

A decision never sends anything: it appends a `Notice` to the carried outbox (and to the decision's
effects), and the workflow runs one activity try per notice. Each try's outcome comes back as a
`Delivery` input: delivered notices leave the outbox, failed ones wait with backoff until the
policy's retry window is over. The outbox is bounded, and nothing leaves it silently.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, cast

import workflows.notices as notices
from config.policy import Policy
from workflows.decision_types import Delivery
from workflows.draft import Draft
from workflows.messages import Person
from workflows.state import MAX_OUTBOX, Notice


def backoff(policy: Policy, attempts: int) -> timedelta:
    """Wait before try `attempts + 1`: 10 s doubling, at most the policy's `retry_max_interval`."""
    base = timedelta(seconds=10) * (2 ** min(attempts - 1, 20))
    longest: timedelta = policy.notifications.retry_max_interval
    return base if base < longest else longest


def notify(
    d: Draft,
    kind: str,
    *,
    reason: str,
    rule: str | None = None,
    recipients: list[Person] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """An outbound event of type `kind` to the people and endpoints the policy routes it to."""
    plan_event(d, kind, "notify", reason=reason, rule=rule, recipients=recipients, data=data)


def cc_head(d: Draft, *, reason: str, rule: str | None) -> None:
    """Copy the head of the ticket's department, if the policy names one."""
    cc = notices.department_head(d.policy, d.state.department)
    if cc:
        plan_event(d, "ticket.cc", "cc_department_heads", reason=reason, rule=rule, cc=cc)


def plan_event(d: Draft, kind: str, activity: Literal["notify", "cc_department_heads"], **fields: Any) -> None:
    """Build the event, plan its deliveries (endpoints by name, people's channels) and enqueue them."""
    d.state.notice_seq += 1
    running = [c.deadline for c in d.state.clocks.values() if c.deadline and c.stopped_at is None]
    fields["deadline"] = min(running, default=None)
    event = notices.build_event(
        event_id=notices.event_id(d.ctx.workflow_id, d.ctx.life, d.state.notice_seq),
        workflow_id=d.ctx.workflow_id,
        ticket=d.ticket,
        snap=d.state,
        type=kind,
        now=d.now,
        **fields,
    )
    # Endpoints by name only (resolved from settings by the activity), and people's channels.
    planned, skipped = notices.plan(d.policy, event, activity)
    for item in planned:
        enqueue(
            d,
            Notice(
                key=item.key,
                activity=cast(Literal["notify", "cc_department_heads"], item.activity),
                type=kind,
                endpoint=item.endpoint,
                deliver=item.deliver,
                created_at=d.now,
                next_attempt_at=d.now,
                give_up_at=d.now + d.policy.notifications.retry_for,
            ),
        )
    for left_out in skipped:
        d.record("notification_skipped", type=kind, event_id=event.id, **left_out)


def enqueue(d: Draft, notice: Notice) -> None:
    d.state.outbox.append(notice)
    d.effects.append(notice)
    _bound_outbox(d)


def _bound_outbox(d: Draft) -> None:
    """Keep the carried outbox bounded: past `MAX_OUTBOX`, the oldest given-up notices go first,
    then the oldest still being retried. Never silently: recorded, counted, and logged."""
    excess = len(d.state.outbox) - MAX_OUTBOX
    if excess <= 0:
        return
    order = {"failed": 0, "undelivered": 1, "pending": 2}
    oldest = sorted(d.state.outbox, key=lambda n: (order[n.status], n.created_at))
    drop = {n.key for n in oldest[:excess]}
    d.state.outbox = [n for n in d.state.outbox if n.key not in drop]
    d.state.dropped += len(drop)
    d.record(
        "notifications_dropped",
        keys=sorted(drop),
        why=f"more than {MAX_OUTBOX} notices undelivered; the receiver has been failing for long",
    )


# Patch: a notice handed to flood control is recorded as handed over, not as delivered.
FLOOD_HANDED_OVER_PATCH = "flood-handed-over-v1"


def settle_delivery(d: Draft, outcome: Delivery) -> None:
    """One try's outcome: delivered (the notice leaves), or failed (retry later, or give up)."""
    notice = next((n for n in d.state.outbox if n.key == outcome.key), None)
    if notice is None:
        return
    tries = notice.attempts + 1
    info: dict[str, Any] = {"key": notice.key, "type": notice.type, "endpoint": notice.endpoint, "attempts": tries}
    if outcome.ok:
        d.state.outbox = [n for n in d.state.outbox if n.key != notice.key]
        if notice.activity == "reassign":
            kind = "helpdesk_skipped" if outcome.detail.get("outcome") == "skipped" else "helpdesk_updated"
        elif outcome.detail.get("flood_control") and d.ctx.patched(FLOOD_HANDED_OVER_PATCH):
            # Handed to the recipient's flood control, which sends it (or its digest) or gives it up:
            # not delivered yet, and not counted as delivered.
            d.record("notification_handed_over", **info, **outcome.detail)
            return
        else:
            kind = "notification_delivered"
        d.state.delivered += 1
        d.record(kind, **info, **outcome.detail)
        return
    notice.attempts = tries
    notice.last_error = (outcome.error or "unknown error")[:500]
    if outcome.final or d.now >= notice.give_up_at:
        notice.status = "failed"
        why = "refused by the receiver" if outcome.final else "retry window over"
        d.record("notification_failed", **info, error=notice.last_error, why=why, redeliver="redeliver action")
        return
    first = notice.status == "pending"
    notice.status = "undelivered"
    wait = backoff(d.policy, tries)
    if outcome.retry_after is not None and outcome.retry_after > wait:
        wait = min(outcome.retry_after, timedelta(hours=1))
    notice.next_attempt_at = d.now + wait
    if first:
        d.record(
            "notification_undelivered",
            **info,
            error=notice.last_error,
            retrying_until=notice.give_up_at.isoformat(),
        )
