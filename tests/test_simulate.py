"""`policy simulate`: the real workflow's schedule for a hypothetical ticket, in local time.

Urgent ticket from a public social post, Friday 16:55 in Berlin, Monday a public holiday (Whit
Monday, from the `holidays` package's German calendar). Office hours 09:00-12:30 and 13:30-17:00.
Deadlines by hand, first response 15 min and resolution 4 h of business time:
  first response: 5 min on Friday (16:55-17:00), Monday off, 10 min on Tuesday -> Tue 09:10
  warning at 75% (11 min 15 s): 5 min Friday + 6 min 15 s Tuesday -> Tue 09:06:15
  resolution: 5 min Friday + 3 h 30 Tuesday morning + 25 min after lunch -> Tue 13:55
  warning at 80% (3 h 12 min): 5 min Friday + 3 h 07 Tuesday -> Tue 12:07
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

import workflows.decisions as decisions
import workflows.timers as timers
from activities.ticket_activities import TicketActivities
from cli.simulate import SimEvent, run_simulation
from config.policy import load_policy_file, policy_from_snapshot
from config.settings import DEFAULT_POLICY, Settings
from workflows.decision_types import Action, Ctx, Delivery, Input, Tick
from workflows.messages import LoadPolicyInput
from workflows.models import ACTIONS, Ticket, TimelineEvent

FRIDAY = "2035-05-11T16:55:00+02:00"  # Whit Monday 2035 is 14 May


def social_policy(tmp_path: Path) -> Path:
    doc = yaml.safe_load(DEFAULT_POLICY.read_text())
    doc["routes"][0]["calendar"] = "berlin-office"  # public social posts on office hours too
    doc["calendars"]["berlin-office"]["holidays"] = []  # the holiday must come from the country calendar
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def urgent_social_post() -> Ticket:
    return Ticket.model_validate(
        {
            "ticket_id": "SIM-1",
            "subject": "Your app lost my order!!",
            "channel": "social_public",
            "category": "orders",
            "priority": "urgent",
            "customer": {"id": "c-1"},
            "opened_at": FRIDAY,
        }
    )


async def test_friday_evening_urgent_social_post_over_a_holiday_weekend(tmp_path: Path) -> None:
    lines = await run_simulation(social_policy(tmp_path), urgent_social_post(), [], days=5)
    text = "\n".join(lines)
    print(text)
    expected = [
        # The ticket decides once its policy is loaded, a 1 ms timer after it opens; its clocks start at opening.
        "Fri 2035-05-11 16:55:00 CEST | routed: route public-social: routes[0] (public-social) matched on "
        "channel=social_public",
        "Fri 2035-05-11 16:55:00 CEST | sla_started: first_response clock starts: target PT15M, "
        "deadline Tue 2035-05-15 09:10:00 CEST",
        "Fri 2035-05-11 16:55:00 CEST | sla_started: resolution clock starts: target PT4H, "
        "deadline Tue 2035-05-15 13:55:00 CEST",
        "Tue 2035-05-15 09:06:15 CEST | ladder_step: ladders.first_response[0] (fr-warning) fires: "
        "first_response SLA at 75% of target",
        "Tue 2035-05-15 09:06:15 CEST | NOTIFY sla.warning to support-t1",
        "Tue 2035-05-15 09:10:00 CEST | sla_breached: first_response SLA breached",
        "Tue 2035-05-15 09:10:00 CEST | NOTIFY sla.breached to support-t1, lee.lead",
        "Tue 2035-05-15 12:07:00 CEST | ladder_step: ladders.resolution[0] (res-warning) fires",
        "Tue 2035-05-15 13:55:00 CEST | sla_breached: resolution SLA breached",
        # The next tier's clocks start at the breach instant, to the microsecond.
        "Tue 2035-05-15 13:55:00 CEST | sla_started: first_response clock starts: target PT15M, "
        "deadline Tue 2035-05-15 14:10:00 CEST",
        "Tue 2035-05-15 13:55:00 CEST | escalated: escalated tier 1 -> 2: resolution SLA after breach",
        "Tue 2035-05-15 13:55:00 CEST | CC dana.head [ladders.resolution[1] (res-breach)]",
    ]
    position = 0
    for wanted in expected:  # in this order, each line starting with the text given
        found = next((i for i, line in enumerate(lines[position:], position) if line.startswith(wanted)), None)
        assert found is not None, f"missing after line {position}: {wanted}\n{text}"
        position = found + 1
    # Nothing fires over the weekend or on the holiday.
    assert not [line for line in lines if line.startswith(("Sat", "Sun", "Mon"))]


async def test_simulated_agent_events(tmp_path: Path) -> None:
    events = [
        SimEvent.model_validate(
            {
                "after": "P3DT16H5M",
                "action": "acknowledge",  # Tue 09:00 local
                "payload": {"actor": {"id": "ann", "role": "agent"}},
            }
        ),
        SimEvent.model_validate(
            {
                "after": "P3DT17H5M",
                "action": "escalate",
                "payload": {
                    "actor": {"id": "ann", "role": "agent"},
                    "kind": "functional",
                    "department": "nowhere",
                    "reason": "x",
                },
            }
        ),
    ]
    lines = await run_simulation(social_policy(tmp_path), urgent_social_post(), events, days=4)
    text = "\n".join(lines)
    assert "Tue 2035-05-15 09:00:00 CEST | acknowledged" in text
    morning = [line for line in lines if line.startswith("Tue 2035-05-15 09:")]
    assert morning and not [line for line in morning if "fr-warning" in line or "SLA breached" in line]
    assert "Tue 2035-05-15 10:00:00 CEST | REFUSED escalate: department: unknown department 'nowhere'" in text


def test_cli_policy_check_and_simulate(tmp_path: Path) -> None:
    policy = social_policy(tmp_path)
    check = subprocess.run(
        [sys.executable, "-m", "cli.main", "policy", "check", str(policy)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0 and check.stdout.startswith("ok: ")
    label = load_policy_file(policy).version_label(policy)  # the string every ticket opened under it carries
    assert f"(version {label};" in check.stdout and label.endswith(" (policy.yaml)")
    broken = tmp_path / "broken.yaml"
    broken.write_text(policy.read_text().replace("department: billing", "department: finance", 1))
    bad = subprocess.run(
        [sys.executable, "-m", "cli.main", "policy", "check", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "routes[1] (billing).department: unknown department 'finance'" in bad.stderr
    sim = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "policy",
            "simulate",
            str(policy),
            "--ticket",
            urgent_social_post().model_dump_json(),
            "--days",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sim.returncode == 0, sim.stderr
    assert "deadline Tue 2035-05-15 09:10:00 CEST" in sim.stdout


TUESDAY = "2035-05-15T09:00:00+02:00"


def agent_events() -> list[SimEvent]:
    """Acknowledged at 09:05; waiting on the customer 10:00-14:00. The resolution clock (4 h) has
    counted 1 h by 10:00; 3 h remain at 14:00, and 14:00 + 3 h of office time is 17:00 sharp."""
    ann = {"id": "ann", "role": "agent"}
    return [
        SimEvent.model_validate({"after": "PT5M", "action": "acknowledge", "payload": {"actor": ann}}),
        SimEvent.model_validate({"after": "PT1H", "action": "pending_customer", "payload": {"actor": ann}}),
        SimEvent.model_validate({"after": "PT5H", "action": "customer_replied", "payload": {"note": "here it is"}}),
    ]


async def test_a_deadline_at_closing_time_is_printed_at_closing_time(tmp_path: Path) -> None:
    t = urgent_social_post().model_copy(update={"opened_at": datetime.fromisoformat(TUESDAY)})
    lines = await run_simulation(social_policy(tmp_path), t, agent_events(), days=2)
    text = "\n".join(lines)
    assert (
        "Tue 2035-05-15 14:00:00 CEST | sla_resumed: resumed; deadlines now resolution Tue 2035-05-15 17:00:00 CEST"
        in (text)
    ), text
    breach = "sla_breached: resolution SLA breached (deadline was Tue 2035-05-15 17:00:00 CEST)"
    assert f"Tue 2035-05-15 17:00:00 CEST | {breach}" in text, text
    assert "Wed 2035-05-16 09:00:00 CEST | sla_breached" not in text


async def oracle(policy_file: Path, ticket: Ticket, events: list[SimEvent], days: float) -> list[TimelineEvent]:
    """What a real ticket decides when every timer and action is on time: the workflow's own decision
    function (`workflows/decisions.py`; the workflow decides nothing) driven at exact instants, with the
    same frozen policy the ticket loads, and every notice delivered at once."""
    settings = Settings(policy_path=policy_file, _env_file=None)
    assert ticket.opened_at is not None
    opened = ticket.opened_at.astimezone(UTC)  # workflow time is UTC
    loader = TicketActivities(settings, None)  # type: ignore[arg-type]
    snapshot = await loader.load_policy(LoadPolicyInput(opened_at=opened))
    policy = policy_from_snapshot(snapshot.fingerprint, snapshot.document)

    def ctx(now: datetime) -> Ctx:
        return Ctx(now=now, workflow_id="ticket-oracle", life="oracle")

    decision = decisions.open_ticket(policy, snapshot.version, ticket, ctx(opened))
    state, out = decision.state, list(decision.events)
    todo = sorted(enumerate(events), key=lambda item: (item[1].after, item[0]))
    end = opened + timedelta(days=days)

    def apply(event: Input, now: datetime) -> None:
        nonlocal state
        d = decisions.decide(state, policy, ticket, event, ctx(now))
        state = d.state
        out.extend(d.events)
        for notice in d.effects:  # delivered at once, as the simulation's recorders do
            d2 = decisions.decide(state, policy, ticket, Delivery(notice.key, ok=True), ctx(now))
            state = d2.state
            out.extend(d2.events)

    while True:
        due = timers.next_due(state, policy)
        action_at = opened + todo[0][1].after if todo else None
        if due is not None and timers.tick_due(state, policy, due[0]) and (action_at is None or due[0] <= action_at):
            if due[0] > end:
                break
            apply(Tick(), due[0])
        elif action_at is not None and action_at <= end:
            index, event = todo.pop(0)
            data = ACTIONS[event.action].model_validate(event.payload).model_dump(mode="json")
            apply(Action(event.action, data, via="update", key=f"simulated-{index}"), max(action_at, opened))
        else:
            break
    return out


async def test_the_simulated_schedule_is_the_real_tickets_to_the_microsecond(tmp_path: Path) -> None:
    policy = social_policy(tmp_path)
    t = urgent_social_post().model_copy(update={"opened_at": datetime.fromisoformat(TUESDAY)})
    timeline: list[TimelineEvent] = []
    await run_simulation(policy, t, agent_events(), days=2, timeline_out=timeline)
    expected = await oracle(policy, t, agent_events(), days=2)

    def rows(events: list[TimelineEvent]) -> list[tuple[datetime, str, str | None, dict[str, Any]]]:
        return [
            (e.at, e.kind, e.actor, e.detail) for e in events if not e.kind.startswith(("notification", "helpdesk"))
        ]

    assert len(rows(timeline)) > 20
    assert rows(timeline) == rows(expected)


async def test_a_ticket_that_completes_within_the_simulated_days(tmp_path: Path) -> None:
    """Resolved after an hour, its reopen window (7 days) closes within the 9 simulated days: the
    ticket completes, and the schedule still prints, one row per line whatever the resolution says."""
    resolve = {"actor": {"id": "ann", "role": "agent"}, "resolution": "done | <ok>\nfine\u202e"}
    events = [SimEvent.model_validate({"after": "PT1H", "action": "resolve", "payload": resolve})]
    lines = await run_simulation(social_policy(tmp_path), urgent_social_post(), events, days=9)
    assert any(line.startswith("Fri 2035-05-11 17:55:00 CEST | resolved") for line in lines)
    assert all("\n" not in line and "\u202e" not in line for line in lines)
    assert "NOTIFY ticket.resolved" in lines[-1] and lines[-1].endswith("done | <ok>\\nfine\\u202e")
