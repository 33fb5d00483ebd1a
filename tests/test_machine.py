"""The ticket's state machine on its own: no Temporal, only `open_ticket` and `decide`.

A hypothesis state machine drives one ticket through random actions (valid and malformed, every
role, repeated idempotency keys), jumps in time and delivery outcomes, and checks after every step
what must always hold: `decide` never raises, refusals change nothing but the count and are on the
timeline once, repeats of an applied key change nothing, the counters agree with the timeline, a
ticket someone must work on always has a next deadline, and the carried state round-trips and stays
small. Plain tests then walk every cell of `TABLE` and pin down Tier 0, the reopen window, missed
reminders, breach times, the reassignment that changes nothing, the state's size and deliveries.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from config.policy import Policy, Priority, parse_policy
from config.settings import DEFAULT_POLICY
from tests.conftest import policy_doc
from tests.helpers import AGENT, LEAD, MANAGER, ticket
from workflows import routing
from workflows.decision_types import Action, Ctx, Decision, Delivery, Input, Refusal, Tick, Undecodable
from workflows.decisions import decide, open_ticket, parse_action
from workflows.models import ACTIONS, ClockName, State, Ticket, TimelineEvent
from workflows.outbox import backoff
from workflows.state import MAX_KEYS, MAX_OUTBOX, MAX_VISITED, Carried, Notice, PolicyRef, TicketState
from workflows.timers import finished, next_due, tick_due
from workflows.transitions import RESUMED, TABLE

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday
POLICY = parse_policy(policy_doc())
OFFICE_POLICY = parse_policy(yaml.safe_load(DEFAULT_POLICY.read_text()))  # office hours, as shipped
SYSTEM_ACTOR: dict[str, Any] = {"id": "escalation-bot", "role": "system"}
CARRIED_LIMIT = 200_000
TENTH_OF_2MB = 209_715


def ctx(now: datetime) -> Ctx:
    return Ctx(now=now, workflow_id="ticket-X", life="life-1")


_REFS: dict[int, PolicyRef] = {}


def policy_ref(policy: Policy) -> PolicyRef:
    ref = _REFS.get(id(policy))
    if ref is None:
        doc = policy.model_dump(mode="json")
        ref = _REFS[id(policy)] = PolicyRef(version=policy.version, fingerprint=policy.fingerprint(), document=doc)
    return ref


def carried_bytes(policy: Policy, state: TicketState) -> int:
    return len(Carried(policy=policy_ref(policy), state=state).model_dump_json().encode())


def without_refused(state: TicketState) -> dict[str, Any]:
    dump = state.model_dump(mode="json")
    dump.pop("refused")
    return dump


class Run:
    """One ticket driven through `decide`, keeping the whole timeline and every effect."""

    def __init__(self, tk: Ticket | None = None, policy: Policy = POLICY, now: datetime = T0) -> None:
        self.policy = policy
        self.ticket = tk or ticket()
        self.now = now
        opened = open_ticket(policy, "v1", self.ticket, ctx(now))
        self.state = opened.state
        self.timeline: list[TimelineEvent] = list(opened.events)
        self.effects: list[Notice] = list(opened.effects)

    def send(self, event: Input) -> Decision:
        decision = decide(self.state, self.policy, self.ticket, event, ctx(self.now))
        self.state = decision.state
        self.timeline += decision.events
        self.effects += decision.effects
        return decision

    def act(self, name: str, data: Any, key: str | None = None) -> Decision:
        return self.send(Action(name, data, key=key))

    def tick(self, after: timedelta = timedelta(0)) -> Decision:
        self.now += after
        return self.send(Tick())

    def tick_to_next_due(self) -> Decision:
        due = next_due(self.state, self.policy)
        assert due is not None
        self.now = max(self.now, due[0])
        return self.send(Tick())

    def deliver_all(self) -> None:
        for notice in list(self.state.outbox):
            self.send(Delivery(notice.key, ok=True))

    def kinds(self) -> list[str]:
        return [e.kind for e in self.timeline]

    def size(self) -> int:
        return carried_bytes(self.policy, self.state)


def kinds(decision: Decision) -> list[str]:
    return [e.kind for e in decision.events]


def self_service_ticket(**fields: Any) -> Ticket:
    return ticket(category="how-to", channel="web", **fields)


def tier0_policy(route_tier: int) -> Policy:
    """The test policy with the self-service route's tier set: at 2, "the route's tier" is not "the tier after 0"."""
    doc = policy_doc()
    (route,) = [r for r in doc["routes"] if r["name"] == "how-to"]
    route["tier"] = route_tier
    policy = parse_policy(doc)
    assert routing.route_named(policy, "how-to").tier == route_tier and policy.next_tier(0) == 1
    return policy


POLICIES = {"24x7": POLICY, "office hours": OFFICE_POLICY, "tier 0 to tier 2": tier0_policy(2)}


# ---------------------------------------------------------------------- the state machine
SHORT_TEXTS = ["", "customer asked", "needs a specialist", "ü" * 40, "r" * 2_000]  # ShortText: at most 2,000 characters
TOO_LONG = "x" * 3_000
ONE_MB = "n" * 1_000_000
NOTES: list[str | None] = [None, "", "called back", "n" * 10_000]
ACTORS = [AGENT, LEAD, MANAGER, SYSTEM_ACTOR]
QUEUES = ["support-t1", "support-t2", "support-managers", "billing-t1", "billing-t3", "tech-t2", "nowhere"]
DEPARTMENTS = ["support", "billing", "technical", "sales", ""]
WRONG_VALUES: list[Any] = [5, -1, None, [], ["a"], {"a": 1}, 1.5, float("nan"), True, TOO_LONG, ONE_MB]
WHOLE_PAYLOADS: list[Any] = [None, [], [1, 2], "text", 5, {}, Undecodable("invalid UTF-8 at byte 3")]
BAD_ACTORS: list[Any] = [
    {"id": "", "role": "agent"},
    {"id": "x", "role": "god"},
    "ann",
    {"id": "x", "role": "agent", "tier": -1},
    {"id": "x" * 201, "role": "lead"},
    {"role": "manager"},
]
UNKNOWN_NAMES = ["", "ack", "Acknowledge", "do_acknowledge", "__class__", "z" * 3_000]
JUMPS = [
    timedelta(seconds=10),
    timedelta(minutes=1),
    timedelta(minutes=10),
    timedelta(minutes=45),
    timedelta(hours=2),
    timedelta(hours=7),
    timedelta(days=1),
    timedelta(days=3),
    timedelta(days=8),
]
VIAS: list[Literal["update", "signal"]] = ["update", "signal"]


def valid_payload(name: str, data: st.DataObject) -> dict[str, Any]:
    draw = data.draw
    actor = draw(st.sampled_from(ACTORS))
    if name in ("acknowledge", "pending_customer"):
        return {"actor": actor, "note": draw(st.sampled_from(NOTES))}
    if name == "reassign":
        payload: dict[str, Any] = {"actor": actor, "reason": draw(st.sampled_from(SHORT_TEXTS))}
        if draw(st.booleans()):
            payload["to_agent"] = draw(st.sampled_from(["ann", "bob", "carol"]))
        if draw(st.booleans()):
            payload["to_queue"] = draw(st.sampled_from(QUEUES))
        return payload
    if name == "escalate":
        payload = {"actor": actor, "kind": draw(st.sampled_from(["hierarchical", "functional"]))}
        payload["reason"] = draw(st.sampled_from(SHORT_TEXTS))
        if payload["kind"] == "functional" or draw(st.booleans()):
            payload["department"] = draw(st.sampled_from(DEPARTMENTS))
        if draw(st.booleans()):
            payload["to_tier"] = draw(st.sampled_from([0, 1, 2, 3, 4, 7]))
        return payload
    if name in ("customer_replied", "confirm_solved"):
        return {"note": draw(st.sampled_from(NOTES))} if draw(st.booleans()) else {}
    if name == "change_priority":
        priority = draw(st.sampled_from([p.value for p in Priority]))
        return {"actor": actor, "priority": priority, "reason": draw(st.sampled_from(SHORT_TEXTS))}
    if name == "resolve":
        return {"actor": actor, "resolution": draw(st.sampled_from(["fixed", "r" * 10_000]))}
    if name in ("reopen", "redeliver", "discard_notices"):
        return {"actor": actor, "reason": draw(st.sampled_from(SHORT_TEXTS))}
    if name == "request_approval":
        return {
            "actor": actor,
            "kind": draw(st.sampled_from(["refund", "discount"])),
            "amount": draw(st.sampled_from([10, 120.5, 1_000, 20_000])),
            "reason": draw(st.sampled_from(SHORT_TEXTS)),
        }
    if name == "decide_approval":
        return {
            "actor": actor,
            "approval_id": draw(st.sampled_from(["apr-1", "apr-2", "apr-3"])),
            "approved": draw(st.booleans()),
            "note": draw(st.sampled_from(NOTES)),
        }
    return {"anything": draw(st.sampled_from(SHORT_TEXTS))}


def spoil(payload: dict[str, Any], data: st.DataObject) -> Any:
    """A malformed variant: a field missing, of the wrong type or too long, an unknown field, or no object."""
    draw = data.draw
    how = draw(st.sampled_from(["drop", "wrong", "extra", "whole", "actor", "huge_note"]))
    spoiled = dict(payload)
    if how == "drop" and spoiled:
        del spoiled[draw(st.sampled_from(sorted(spoiled)))]
    elif how == "wrong" and spoiled:
        spoiled[draw(st.sampled_from(sorted(spoiled)))] = draw(st.sampled_from(WRONG_VALUES))
    elif how == "extra":
        spoiled["surprise"] = 1
    elif how == "actor":
        spoiled["actor"] = draw(st.sampled_from(BAD_ACTORS))
    elif how == "huge_note":
        spoiled["note"] = draw(st.sampled_from([TOO_LONG * 4, ONE_MB]))
    else:
        return draw(st.sampled_from(WHOLE_PAYLOADS))
    return spoiled


def short(value: Any) -> str:
    return repr(value)[:300]


class TicketMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.run: Run
        self.steps: list[str] = []
        self.used_keys: list[str] = []
        self.applied_keys: list[str] = []
        self.notices_made: set[str] = set()

    # ------------------------------------------------------------------ opening
    @initialize(
        kind=st.sampled_from(["self_service", "self_service", "default", "billing", "technical", "social"]),
        priority=st.sampled_from([p.value for p in Priority]),
        vip=st.booleans(),
        policy=st.sampled_from(sorted(POLICIES)),
        opened_before=st.sampled_from([timedelta(0), timedelta(minutes=20), timedelta(hours=30)]),
    )
    def open(self, kind: str, priority: str, vip: bool, policy: str, opened_before: timedelta) -> None:
        fields: dict[str, Any] = {
            "self_service": {"category": "how-to", "channel": "email"},
            "default": {"category": "account", "channel": "phone"},
            "billing": {"category": "billing", "channel": "chat"},
            "technical": {"category": "outage", "channel": "web"},
            "social": {"category": "account", "channel": "social_public"},
        }[kind]
        customer = {"id": "c-1", "email": "c@example.com", "segment": "vip" if vip else "standard"}
        tk = ticket(**fields, priority=priority, customer=customer, opened_at=T0 - opened_before)
        self.run = Run(tk, POLICIES[policy])
        self.steps.append(f"open {kind} {priority} vip={vip} policy={policy} opened -{opened_before}")
        if kind == "self_service":
            assert self.run.state.state == State.self_service
            assert self.run.state.tier == 0
        self.notices_made = {n.key for n in self.run.effects}
        self.check_decision_events(self.run.timeline)

    # ------------------------------------------------------------------ one input, with its checks
    def send(self, event: Input, label: str) -> Decision:
        self.steps.append(label)
        before = self.run.state
        try:
            decision = decide(before, self.run.policy, self.run.ticket, event, ctx(self.run.now))
        except Exception as exc:  # pragma: no cover - the promise under test
            pytest.fail(f"decide raised {exc!r}; steps: {self.steps}")
        self.run.state = decision.state
        self.run.timeline += decision.events
        self.run.effects += decision.effects
        self.check_decision_events(decision.events)
        outbox_before = {n.key for n in before.outbox}
        outbox_after = {n.key for n in decision.state.outbox}
        for notice in decision.effects:
            assert notice.key not in self.notices_made, f"notice key reused: {notice.key}"
            assert notice.key in outbox_after and notice.key not in outbox_before
            self.notices_made.add(notice.key)
        assert outbox_after - outbox_before == {n.key for n in decision.effects}, "outbox grew without an effect"
        return decision

    def check_decision_events(self, events: list[TimelineEvent]) -> None:
        for event in events:
            assert event.kind != "internal_error", f"internal error {event.detail}; steps: {self.steps}"
            assert event.at <= self.run.now, f"{event.kind} in the future"
            json.dumps(event.model_dump(mode="json"))

    # ------------------------------------------------------------------ rules
    @rule(data=st.data())
    def act(self, data: st.DataObject) -> None:
        """Any action, known or not, any role, a malformed payload three times in ten."""
        name = data.draw(st.sampled_from(sorted(ACTIONS))) if data.draw(st.integers(0, 9)) else None
        if name is None:
            name = data.draw(st.sampled_from(UNKNOWN_NAMES))
        payload: Any = valid_payload(name, data)
        if data.draw(st.integers(0, 9)) < 3:
            payload = spoil(payload, data)
        self.action(name, payload, data)

    @rule(data=st.data())
    def act_sensibly(self, data: st.DataObject) -> None:
        """An action the ticket's state takes, with a valid payload and a reason: gets deeper into the ticket's life."""
        names = sorted(n for n, row in TABLE.items() if row[self.run.state.state].applied)
        name = data.draw(st.sampled_from(names))
        payload = valid_payload(name, data)
        if "actor" in payload:
            payload["actor"] = data.draw(st.sampled_from([LEAD, MANAGER, AGENT]))
        if payload.get("reason") == "":
            payload["reason"] = "needed"
        if name == "escalate" and payload["kind"] == "functional":
            others = sorted(set(self.run.policy.departments) - {self.run.state.department})
            payload["department"] = data.draw(st.sampled_from(others))
        if name == "decide_approval":
            payload["actor"] = MANAGER
            pending = [a.id for a in self.run.state.approvals if a.status == "pending"]
            payload["approval_id"] = data.draw(st.sampled_from(pending or ["apr-1"]))
        self.action(name, payload, data)

    def action(self, name: str, payload: Any, data: st.DataObject) -> None:
        key_choice = data.draw(st.sampled_from(["none", "none", "fresh", "repeat"]))
        key: str | None = None
        if key_choice == "fresh" or (key_choice == "repeat" and not self.used_keys):
            key = f"key-{len(self.used_keys)}"
            self.used_keys.append(key)
        elif key_choice == "repeat":
            key = data.draw(st.sampled_from(self.used_keys))
        via = data.draw(st.sampled_from(VIAS))
        before = self.run.state
        parsed = parse_action(name, payload)
        decision = self.send(Action(name, payload, via=via, key=key), f"act {name} {short(payload)} key={key}")
        after = decision.state
        if decision.refusal is not None:
            repeated = key is not None and key in before.refused_keys and key not in before.applied_keys
            if key is not None and repeated and not isinstance(parsed, Refusal):  # refused before: same answer
                assert decision.duplicate and decision.events == [] and decision.effects == []
                assert [decision.refusal.field, decision.refusal.reason] == before.refused_keys[key][:2]
                assert after.model_dump() == before.model_dump(), "a repeated refusal changed the state"
                return
            assert not decision.duplicate
            assert kinds(decision) == ["action_rejected"], kinds(decision)
            detail = decision.events[0].detail
            assert (detail["field"], detail["reason"]) == (decision.refusal.field, decision.refusal.reason)
            assert detail["via"] == via
            assert decision.effects == []
            assert after.refused == before.refused + 1
            if key is not None and via == "update":  # remembered with its answer
                assert after.refused_keys[key][:2] == [decision.refusal.field, decision.refusal.reason]
                assert len(after.refused_keys) <= MAX_KEYS
            changed = {**without_refused(after), "refused_keys": None}
            assert changed == {**without_refused(before), "refused_keys": None}, (
                f"a refusal changed the state: {self.steps}"
            )
            if isinstance(parsed, Refusal):
                assert decision.refusal == parsed
            else:
                assert not (key is not None and key in before.applied_keys), "a repeated key was judged again"
                cell = TABLE[name][before.state]
                if not cell.applied:
                    assert decision.refusal == Refusal("state", cell.note)
            return
        assert not isinstance(parsed, Refusal), "an undecodable payload was applied"
        if key is not None and key in before.applied_keys:
            assert decision.duplicate, "a repeated key was applied again"
        if decision.duplicate:
            assert key is not None and key in before.applied_keys
            assert decision.events == [] and decision.effects == []
            assert after.model_dump() == before.model_dump(), "a repeated key changed the state"
            return
        assert TABLE[name][before.state].applied
        assert decision.events, f"{name} applied without a timeline event"
        assert after.refused == before.refused
        if key is not None:
            self.applied_keys = [*self.applied_keys, key][-MAX_KEYS:]
        assert after.applied_keys == self.applied_keys

    @rule(jump=st.sampled_from(JUMPS))
    def time_passes(self, jump: timedelta) -> None:
        self.run.now += jump
        self.tick(f"+{jump} tick")

    @rule()
    def time_passes_to_next_due(self) -> None:
        due = next_due(self.run.state, self.run.policy)
        if due is not None and due[0] > self.run.now:
            self.run.now = due[0]
        self.tick(f"tick at next due {due}")

    def tick(self, label: str) -> None:
        before = self.run.state
        decision = self.send(Tick(), label)
        assert decision.refusal is None
        assert not tick_due(decision.state, self.run.policy, self.run.now), f"a tick left work due: {self.steps}"
        if not decision.events:
            assert decision.state.model_dump() == before.model_dump(), "a tick changed the state silently"

    @rule(data=st.data())
    def delivery(self, data: st.DataObject) -> None:
        # What the workflow would try now: notices not given up, whose next try is due.
        ready = [n for n in self.run.state.outbox if n.status != "failed" and n.next_attempt_at <= self.run.now]
        keys = [n.key for n in ready] or ["no-such-notice"]
        key = data.draw(st.sampled_from(keys))
        outcome = data.draw(st.sampled_from(["ok", "ok", "failed", "final", "retry_after"]))
        event = Delivery(
            key,
            ok=outcome == "ok",
            error=None if outcome == "ok" else "HTTP 503",
            final=outcome == "final",
            retry_after=timedelta(minutes=30) if outcome == "retry_after" else None,
        )
        before = self.run.state
        notice = next((n for n in before.outbox if n.key == key), None)
        decision = self.send(event, f"delivery {key} {outcome}")
        after = decision.state
        assert decision.refusal is None and decision.effects == []
        if notice is None:
            assert decision.events == [] and after.model_dump() == before.model_dump()
            return
        now_notice = next((n for n in after.outbox if n.key == key), None)
        if outcome == "ok":
            assert now_notice is None and after.delivered == before.delivered + 1
            assert kinds(decision) in (["notification_delivered"], ["helpdesk_updated"])
            return
        assert now_notice is not None or "notifications_dropped" in kinds(decision)
        if now_notice is None:
            return
        assert now_notice.attempts == notice.attempts + 1
        if outcome == "final" or self.run.now >= notice.give_up_at:
            assert now_notice.status == "failed"
            assert "notification_failed" in kinds(decision)
        else:
            assert now_notice.status == "undelivered"
            assert now_notice.next_attempt_at > self.run.now
            expected = ["notification_undelivered"] if notice.status == "pending" else []
            assert kinds(decision) == expected

    @rule()
    def deliver_everything(self) -> None:
        for notice in list(self.run.state.outbox):
            if notice.status != "failed":
                self.send(Delivery(notice.key, ok=True), f"delivery {notice.key} ok")

    # ------------------------------------------------------------------ invariants
    @invariant()
    def counters_match_the_timeline(self) -> None:
        s, counts = self.run.state, Counter(self.run.kinds())
        assert s.internal_errors == 0, f"internal error; steps: {self.steps}"
        assert s.escalations == counts["escalated"], self.steps
        assert s.breaches == counts["sla_breached"], self.steps
        assert s.refused == counts["action_rejected"], self.steps
        assert s.reopens == counts["reopened"], self.steps
        assert s.delivered == counts["notification_delivered"] + counts["helpdesk_updated"] + counts["helpdesk_skipped"]

    @invariant()
    def work_always_has_a_deadline(self) -> None:
        s = self.run.state
        if s.state in (State.open, State.acknowledged):
            assert next_due(s, self.run.policy) is not None, f"an {s.state} ticket with nothing due: {self.steps}"
        if s.state == State.self_service:
            assert s.tier == 0 and s.self_service_until is not None
        elif s.state != State.resolved:
            assert s.tier in self.run.policy.tier_levels()

    @invariant()
    def state_is_consistent(self) -> None:
        s = self.run.state
        running = {n for n, c in s.clocks.items() if c.running_since is not None and c.stopped_at is None}
        assert (s.state == State.pending_customer) == (s.resume_state is not None)
        assert (s.state == State.resolved) == (s.resolved_at is not None)
        if s.state in (State.open, State.acknowledged):
            assert ClockName.resolution in running
        if s.state == State.acknowledged:
            assert s.first_response_at is not None and ClockName.first_response not in running
        if s.state in (State.pending_customer, State.resolved):
            assert not running, f"clocks {running} run while {s.state}"
        assert len(s.applied_keys) <= MAX_KEYS and len(s.tiers_visited) <= MAX_VISITED
        assert len({n.key for n in s.outbox}) == len(s.outbox)
        assert len(s.outbox) <= MAX_OUTBOX

    @invariant()
    def state_round_trips_and_stays_small(self) -> None:
        s = self.run.state
        as_json = s.model_dump(mode="json")
        json.dumps(as_json)
        assert TicketState.model_validate(as_json).model_dump() == s.model_dump()
        assert carried_bytes(self.run.policy, s) < CARRIED_LIMIT, f"carried state too big; steps: {self.steps}"


TestTicketMachine = TicketMachine.TestCase
TestTicketMachine.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------- every cell of the table
def failed_once(run: Run) -> None:
    """Make the first outbox notice undelivered, so that `redeliver` has something to do."""
    run.send(Delivery(run.state.outbox[0].key, ok=False, error="HTTP 502"))
    assert run.state.outbox[0].status == "undelivered"


def in_state(state: State) -> Run:
    if state == State.self_service:
        run = Run(self_service_ticket())
    else:
        run = Run(ticket())
        assert run.act("reassign", {"actor": LEAD, "to_agent": "bob", "reason": "skills"}).refusal is None
        if state in (State.acknowledged, State.pending_customer):
            assert run.act("acknowledge", {"actor": AGENT}).refusal is None
        if state == State.pending_customer:
            assert run.act("pending_customer", {"actor": AGENT}).refusal is None
        if state == State.resolved:
            assert run.act("resolve", {"actor": AGENT, "resolution": "fixed"}).refusal is None
    failed_once(run)
    run.now += timedelta(minutes=5)
    assert run.state.state == state
    return run


VALID: dict[str, dict[str, Any]] = {
    "acknowledge": {"actor": AGENT, "note": "on it"},
    "reassign": {"actor": LEAD, "to_agent": "carol", "reason": "skills"},
    "escalate": {"actor": LEAD, "kind": "hierarchical", "reason": "needs a specialist"},
    "pending_customer": {"actor": AGENT, "note": "asked for logs"},
    "customer_replied": {"note": "logs attached"},
    "confirm_solved": {"note": "works now"},
    "change_priority": {"actor": LEAD, "priority": "high", "reason": "customer is blocked"},
    "resolve": {"actor": AGENT, "resolution": "fixed"},
    "reopen": {"actor": AGENT, "reason": "it broke again"},
    "request_approval": {"actor": AGENT, "kind": "refund", "amount": 10, "reason": "goodwill"},
    "decide_approval": {"actor": MANAGER, "approval_id": "apr-1", "approved": True},
    "redeliver": {"actor": LEAD, "reason": "receiver is back"},
    "discard_notices": {"actor": LEAD, "reason": "the receiver is gone for good"},
}


def test_the_table_covers_every_action_and_state() -> None:
    assert set(TABLE) == set(ACTIONS) == set(VALID)
    for name, row in TABLE.items():
        assert set(row) == set(State), name


@pytest.mark.parametrize("name", sorted(TABLE))
@pytest.mark.parametrize("state", list(State))
def test_every_cell_of_the_table(name: str, state: State) -> None:
    run = in_state(state)
    cell = TABLE[name][state]
    pending_approval = name == "decide_approval" and state not in (State.self_service, State.resolved)
    if pending_approval:  # a pending approval to decide (none can exist in self_service or resolved)
        request = {"actor": AGENT, "kind": "refund", "amount": 1_000, "reason": "big refund"}
        assert run.act("request_approval", request).refusal is None
        assert run.state.approvals[0].status == "pending"
    before = run.state
    decision = run.act(name, VALID[name])
    if not cell.applied:
        assert decision.refusal == Refusal("state", cell.note)
        assert kinds(decision) == ["action_rejected"]
        assert decision.events[0].detail["reason"] == cell.note
        assert without_refused(decision.state) == without_refused(before)
    elif name == "decide_approval" and not pending_approval:
        assert decision.refusal == Refusal("approval_id", "no approval 'apr-1' on this ticket")
    elif name == "discard_notices" and not any(n.status == "failed" for n in before.outbox):
        assert decision.refusal == Refusal("state", "no given-up notices on this ticket (only those can be discarded)")
    else:
        assert decision.refusal is None, decision.refusal
        assert "action_rejected" not in kinds(decision) and decision.events
        # The cell's target state is what its handler leaves the ticket in.
        target = before.resume_state if cell.target == RESUMED else cell.target
        assert decision.state.state == target, f"{name} from {state.value}: {decision.state.state} != {target}"
        if cell.note.startswith("recorded"):  # on the timeline only
            assert decision.state.model_dump() == before.model_dump()
        else:
            assert decision.state.model_dump() != before.model_dump()


# ---------------------------------------------------------------------- Tier 0
ROUTE_TIERS = pytest.mark.parametrize("route_tier", [1, 2])


@ROUTE_TIERS
def test_acknowledge_in_self_service_leaves_tier_0_and_acknowledges(route_tier: int) -> None:
    run = Run(self_service_ticket(), tier0_policy(route_tier))
    assert run.state.state == State.self_service and run.state.tier == 0 and not run.state.clocks
    decision = run.act("acknowledge", {"actor": AGENT})
    assert decision.refusal is None
    s = decision.state
    assert (s.state, s.tier, s.department, s.assignee) == (State.acknowledged, route_tier, "support", "ann")
    assert s.queue == f"support-t{route_tier}"
    assert s.self_service_until is None and s.first_response_at == T0
    assert s.clocks[ClockName.first_response].stopped_at == T0
    assert s.clocks[ClockName.resolution].stopped_at is None and s.clocks[ClockName.resolution].deadline is not None
    assert kinds(decision) == ["sla_started", "sla_started", "tier_entered", "acknowledged"]


@ROUTE_TIERS
def test_a_lead_reassigns_a_self_service_ticket_to_a_queue(route_tier: int) -> None:
    run = Run(self_service_ticket(), tier0_policy(route_tier))
    queue = f"billing-t{route_tier}"
    decision = run.act("reassign", {"actor": LEAD, "to_queue": queue, "reason": "a billing question"})
    assert decision.refusal is None
    s = decision.state
    assert (s.state, s.tier, s.queue, s.department) == (State.open, route_tier, queue, "billing")
    assert "reassigned" in kinds(decision)
    assert {n.type for n in decision.effects} == {"ticket.reassigned", "helpdesk.reassign"}


@ROUTE_TIERS
def test_a_functional_escalation_out_of_tier_0_lands_at_the_route_tier(route_tier: int) -> None:
    policy = tier0_policy(route_tier)
    run = Run(self_service_ticket(priority="high"), policy)
    payload = {"actor": AGENT, "kind": "functional", "department": "technical", "reason": "it is a bug"}
    decision = run.act("escalate", payload)
    assert decision.refusal is None
    s = decision.state
    assert (s.state, s.tier, s.department, s.queue) == (State.open, route_tier, "technical", f"tech-t{route_tier}")
    targets = routing.targets_for(policy, "how-to", "standard", route_tier, Priority.high)
    assert s.clocks[ClockName.first_response].target == targets.first_response
    assert s.clocks[ClockName.resolution].target == targets.resolution
    assert s.clocks[ClockName.first_response].deadline == T0 + targets.first_response
    assert s.clocks[ClockName.resolution].deadline == T0 + targets.resolution
    escalated = [e for e in decision.events if e.kind == "escalated"]
    assert len(escalated) == 1 and escalated[0].detail["tier"] == route_tier
    assert s.escalations == 1 and s.tiers_visited == [route_tier]


@ROUTE_TIERS
def test_hierarchical_escalation_and_expiry_leave_tier_0_for_the_route_tier(route_tier: int) -> None:
    policy = tier0_policy(route_tier)
    run = Run(self_service_ticket(), policy)
    decision = run.act("escalate", {"actor": AGENT, "kind": "hierarchical", "reason": "needs a human"})
    assert decision.refusal is None and (decision.state.state, decision.state.tier) == (State.open, route_tier)
    expired = Run(self_service_ticket(), policy)
    until = expired.state.self_service_until
    assert until == T0 + timedelta(days=1)
    assert kinds(expired.tick(timedelta(hours=23))) == []
    decision = expired.tick(timedelta(hours=1))
    assert kinds(decision)[0] == "self_service_expired"
    assert (decision.state.state, decision.state.tier) == (State.open, route_tier)


@ROUTE_TIERS
def test_confirm_solved_then_reopen_lands_at_the_route_tier(route_tier: int) -> None:
    run = Run(self_service_ticket(), tier0_policy(route_tier))
    assert run.act("confirm_solved", {"note": "the article helped"}).refusal is None
    assert (run.state.state, run.state.tier) == (State.resolved, 0)
    run.now += timedelta(days=2)
    decision = run.act("reopen", {"actor": AGENT, "reason": "it did not help after all"})
    assert decision.refusal is None
    s = decision.state
    assert (s.state, s.tier, s.queue, s.reopens) == (State.open, route_tier, f"support-t{route_tier}", 1)
    assert s.clocks[ClockName.first_response].started_at == run.now


# ---------------------------------------------------------------------- the reopen window
def test_reopen_after_the_window_is_refused_naming_the_window() -> None:
    run = Run(ticket())
    assert run.act("resolve", {"actor": AGENT, "resolution": "fixed"}).refusal is None
    closes = T0 + POLICY.reopen_window
    run.now = closes + timedelta(seconds=1)
    decision = run.act("reopen", {"actor": AGENT, "reason": "broken again"})
    assert decision.refusal is not None and decision.refusal.field == "state"
    assert "reopen window" in decision.refusal.reason and closes.isoformat() in decision.refusal.reason
    assert decision.state.state == State.resolved and decision.state.refused == 1
    run.now = closes - timedelta(seconds=1)  # just inside the window it is taken
    assert run.act("reopen", {"actor": AGENT, "reason": "broken again"}).refusal is None
    assert run.state.state == State.open and run.state.reopens == 1


# ---------------------------------------------------------------------- missed reminders, breach times
def to_top_tier(run: Run) -> datetime:
    """Tick through breaches until the top tier's repeating reminder has fired once; its time."""
    for _ in range(60):
        run.tick_to_next_due()
        run.deliver_all()
        clock = run.state.clocks[ClockName.resolution]
        if run.state.tier == 4 and clock.fired.get("res-top-tier-repeat") == 1:
            return run.now
    raise AssertionError(f"never reached the top tier: {run.kinds()}")


def test_missed_reminders_collapse_into_one_notice() -> None:
    doc = policy_doc()
    assert doc["ladders"]["resolution"][2]["id"] == "res-top-tier-repeat"
    doc["ladders"]["resolution"][2]["repeat"] = {"interval": "PT2M"}
    policy = parse_policy(doc)
    run = Run(ticket(priority="urgent"), policy)
    first = to_top_tier(run)
    assert first == run.state.clocks[ClockName.resolution].deadline
    assert Counter(run.kinds())["escalated"] == 3
    run.now = first + timedelta(hours=1)  # reminders were due at +2, +4, ..., +60 minutes: 30 of them
    decision = run.send(Tick())
    steps = [e for e in decision.events if e.kind == "ladder_step"]
    assert kinds(decision) == ["ladder_step"]
    assert steps[0].detail["missed"] == 29 and "29 earlier reminder(s) missed" in steps[0].detail["reason"]
    breached = [n for n in decision.effects if n.type == "sla.breached"]
    assert len(breached) == 1 and len(decision.effects) == 1
    assert breached[0].deliver is not None and breached[0].deliver.event.data == {"missed": 29}
    assert run.state.clocks[ClockName.resolution].fired["res-top-tier-repeat"] == 31
    assert next_due(run.state, policy) == (first + timedelta(minutes=62), "resolution step res-top-tier-repeat")


def test_a_breach_is_recorded_at_its_deadline() -> None:
    run = Run(ticket())
    deadlines = {name: clock.deadline for name, clock in run.state.clocks.items()}
    assert deadlines[ClockName.first_response] == T0 + timedelta(hours=8)
    assert deadlines[ClockName.resolution] == T0 + timedelta(days=3)
    decision = run.tick(timedelta(days=5))
    breaches = [e for e in decision.events if e.kind == "sla_breached"]
    assert [(e.detail["clock"], e.at) for e in breaches] == [
        ("first_response", deadlines[ClockName.first_response]),
        ("resolution", deadlines[ClockName.resolution]),
    ]
    for event in breaches:
        assert event.detail["deadline"] == event.at.isoformat()
        assert event.detail["noticed_at"] == run.now.isoformat()
    assert run.state.tier == 2 and run.state.breaches == 2


# ---------------------------------------------------------------------- a change that changes nothing
def test_the_breach_of_an_untouched_ticket_reassigns_nothing() -> None:
    run = Run(ticket())
    assert (run.state.queue, run.state.assignee) == ("support-t1", None)
    decision = run.tick(timedelta(hours=8, minutes=1))
    assert "sla_breached" in kinds(decision) and "reassign_skipped" in kinds(decision)
    assert "reassigned" not in kinds(decision)
    types = [n.type for n in decision.effects]
    assert "ticket.reassigned" not in types and "helpdesk.reassign" not in types
    assert "sla.breached" in types


def test_the_breach_of_an_assigned_ticket_takes_it_back_to_the_queue() -> None:
    run = Run(ticket())
    assert run.act("reassign", {"actor": LEAD, "to_agent": "bob", "reason": "skills"}).refusal is None
    decision = run.tick(timedelta(hours=8, minutes=1))
    assert "reassigned" in kinds(decision) and "reassign_skipped" not in kinds(decision)
    assert {"ticket.reassigned", "helpdesk.reassign"} <= {n.type for n in decision.effects}
    assert (run.state.queue, run.state.assignee) == ("support-t1", None)


# ---------------------------------------------------------------------- bounded state
def test_ninety_days_of_top_tier_reminders_keep_the_state_small() -> None:
    run = Run(ticket())
    start = to_top_tier(run)
    reminders = 0
    while run.now < start + timedelta(days=90):
        decision = run.tick_to_next_due()
        reminders += sum(1 for e in decision.events if e.detail.get("rule", "").endswith("(res-top-tier-repeat)"))
        run.deliver_all()
        assert run.state.outbox == []
    assert reminders == 90 * 6
    assert run.state.clocks[ClockName.resolution].fired["res-top-tier-repeat"] == 90 * 6 + 1
    assert run.state.delivered == len(run.effects)
    assert run.size() < TENTH_OF_2MB


def test_one_megabyte_notes_are_refused_and_the_state_stays_small() -> None:
    run = Run(ticket())
    size = run.size()
    for _ in range(4):
        decision = run.act("customer_replied", {"note": ONE_MB})
        assert decision.refusal is not None and decision.refusal.field == "note"
        assert "10000" in decision.refusal.reason
    assert run.state.refused == 4
    assert run.size() < TENTH_OF_2MB and run.size() - size < 100


def require(condition: bool, what: str) -> None:
    """A precondition of a known-bug test: fails the test outright instead of counting as the bug."""
    if not condition:
        pytest.fail(what)


def resolve_and_reopen(run: Run, cycles: int, resolution: str, failure: Delivery) -> None:
    """Resolve and reopen the ticket `cycles` times; every notice's first try fails with `failure`."""
    for _ in range(cycles):
        for name, payload in (
            ("resolve", {"actor": AGENT, "resolution": resolution}),
            ("reopen", {"actor": AGENT, "reason": "it broke again"}),
        ):
            decision = run.act(name, payload)
            require(decision.refusal is None, f"{name} refused: {decision.refusal}")
            for notice in decision.effects:
                run.send(Delivery(notice.key, ok=False, error=failure.error, final=failure.final))
        run.now += timedelta(minutes=5)


def test_failed_notices_with_long_texts_keep_the_state_small() -> None:
    run = Run(ticket())
    resolve_and_reopen(run, 120, "r" * 10_000, Delivery("", ok=False, error="HTTP 410", final=True))
    assert sum(n.status == "failed" for n in run.state.outbox) == MAX_OUTBOX
    assert run.size() < TENTH_OF_2MB
    # The oldest went, and said so: counted, and each drop is on the timeline with its keys.
    dropped = [key for e in run.timeline if e.kind == "notifications_dropped" for key in e.detail["keys"]]
    assert run.state.dropped == len(dropped) == 2 * 120 - MAX_OUTBOX


def test_undelivered_notices_keep_the_state_small() -> None:
    run = Run(ticket())
    resolve_and_reopen(run, 300, "r" * 10_000, Delivery("", ok=False, error="HTTP 503"))
    assert {n.status for n in run.state.outbox} <= {"undelivered", "failed"}
    assert len(run.state.outbox) == MAX_OUTBOX and run.size() < TENTH_OF_2MB
    assert all(len(n.deliver.event.reason) <= 500 for n in run.state.outbox if n.deliver)


# ---------------------------------------------------------------------- deliveries
def test_a_failed_delivery_backs_off_then_gives_up_and_a_lead_redelivers() -> None:
    run = Run(self_service_ticket())
    (notice,) = run.state.outbox
    give_up = T0 + POLICY.notifications.retry_for
    assert (notice.status, notice.give_up_at) == ("pending", give_up)

    first = run.send(Delivery(notice.key, ok=False, error="HTTP 503"))
    (n,) = first.state.outbox
    assert (n.status, n.attempts, n.last_error) == ("undelivered", 1, "HTTP 503")
    assert n.next_attempt_at == T0 + backoff(POLICY, 1) == T0 + timedelta(seconds=10)
    assert kinds(first) == ["notification_undelivered"]
    assert first.events[0].detail["retrying_until"] == give_up.isoformat()

    run.now = n.next_attempt_at
    second = run.send(Delivery(notice.key, ok=False, error="HTTP 503"))
    (n,) = second.state.outbox
    assert (n.status, n.attempts) == ("undelivered", 2)
    assert n.next_attempt_at == run.now + timedelta(seconds=20)
    assert second.events == []  # the first failure is on the timeline once

    asked = run.send(Delivery(notice.key, ok=False, error="HTTP 429", retry_after=timedelta(minutes=5)))
    assert asked.state.outbox[0].next_attempt_at == run.now + timedelta(minutes=5)
    capped = run.send(Delivery(notice.key, ok=False, error="HTTP 429", retry_after=timedelta(hours=3)))
    assert capped.state.outbox[0].next_attempt_at == run.now + timedelta(hours=1)
    assert backoff(POLICY, 30) == POLICY.notifications.retry_max_interval

    assert run.act("redeliver", {"actor": LEAD, "reason": "x"}).refusal is None  # undelivered: retry now
    assert run.state.outbox[0].next_attempt_at == run.now

    run.now = give_up + timedelta(minutes=1)
    given_up = run.send(Delivery(notice.key, ok=False, error="HTTP 503"))
    (n,) = given_up.state.outbox
    assert n.status == "failed"
    assert kinds(given_up) == ["notification_failed"]
    assert given_up.events[0].detail["why"] == "retry window over"
    assert not any(k == "notification_undelivered" for k in run.kinds()[run.kinds().index("notification_failed") :])

    refused = run.act("redeliver", {"actor": AGENT, "reason": "please"})
    assert refused.refusal == Refusal("actor.role", "role agent may not redeliver notices; ask a lead")
    redo = run.act("redeliver", {"actor": LEAD, "reason": "receiver fixed"})
    assert redo.refusal is None and kinds(redo) == ["redelivery_requested"]
    assert redo.events[0].detail["notices"] == [notice.key]
    (n,) = redo.state.outbox
    assert (n.status, n.next_attempt_at, n.give_up_at) == (
        "undelivered",
        run.now,
        run.now + POLICY.notifications.retry_for,
    )

    done = run.send(Delivery(notice.key, ok=True))
    assert done.state.outbox == [] and done.state.delivered == 1 and kinds(done) == ["notification_delivered"]
    assert run.act("redeliver", {"actor": LEAD, "reason": "x"}).refusal == Refusal(
        "state", "no undelivered notices on this ticket"
    )


def test_a_final_failure_fails_the_notice_at_once() -> None:
    run = Run(self_service_ticket())
    (notice,) = run.state.outbox
    decision = run.send(Delivery(notice.key, ok=False, error="HTTP 410 Gone", final=True))
    (n,) = decision.state.outbox
    assert (n.status, n.attempts, n.last_error) == ("failed", 1, "HTTP 410 Gone")
    assert kinds(decision) == ["notification_failed"]
    assert decision.events[0].detail["why"] == "refused by the receiver"


def test_a_given_up_notice_keeps_the_ticket_open_until_redelivered_or_discarded() -> None:
    run = Run(ticket())
    resolved = run.act("resolve", {"actor": AGENT, "resolution": "fixed"})
    (notice,) = resolved.effects
    run.send(Delivery(notice.key, ok=False, error="HTTP 410", final=True))
    run.now += POLICY.reopen_window + timedelta(minutes=1)
    # The reopen window is over, but a notice was never delivered: the ticket does not complete.
    assert not finished(run.state, POLICY, run.now)
    no = run.act("discard_notices", {"actor": AGENT, "reason": "gone"})
    assert no.refusal == Refusal("actor.role", "role agent may not discard notices; ask a lead")
    gone = run.act("discard_notices", {"actor": LEAD, "reason": "the receiver was retired"})
    assert gone.refusal is None and kinds(gone) == ["notifications_discarded"]
    assert gone.events[0].detail["notices"][0]["key"] == notice.key and run.state.dropped == 1
    assert finished(run.state, POLICY, run.now)
