"""`policy simulate`: the workflow's decisions for a hypothetical ticket at exact instants, in local time.

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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from temporalio.testing import WorkflowEnvironment

from cli.simulate import SimEvent, run_simulation
from config.policy import load_policy_file
from config.settings import DEFAULT_POLICY
from config.snapshots import ticket_policy
from tests.conftest import policy_doc
from tests.helpers import ticket
from tests.receiver import Receiver
from workflows.models import Ticket, TimelineEvent, workflow_id_for
from workflows.simulation import Simulation

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
    lines = run_simulation(social_policy(tmp_path), urgent_social_post(), [], days=5)
    text = "\n".join(lines)
    print(text)
    expected = [
        # The ticket decides at its opening; its clocks start then.
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
    lines = run_simulation(social_policy(tmp_path), urgent_social_post(), events, days=4)
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
    lines = run_simulation(social_policy(tmp_path), t, agent_events(), days=2)
    text = "\n".join(lines)
    assert (
        "Tue 2035-05-15 14:00:00 CEST | sla_resumed: resumed; deadlines now resolution Tue 2035-05-15 17:00:00 CEST"
        in (text)
    ), text
    breach = "sla_breached: resolution SLA breached (deadline was Tue 2035-05-15 17:00:00 CEST)"
    assert f"Tue 2035-05-15 17:00:00 CEST | {breach}" in text, text
    assert "Wed 2035-05-16 09:00:00 CEST | sla_breached" not in text


def comparable_events(events: list[TimelineEvent]) -> list[TimelineEvent]:
    """Every row but the deliveries' (a server delivers a notice a task later; the simulation at once)."""
    return [e for e in events if not e.kind.startswith(("notification", "helpdesk"))]


def comparable(events: list[TimelineEvent]) -> list[tuple[datetime, str, str | None, dict[str, Any]]]:
    return [(e.at, e.kind, e.actor, e.detail) for e in comparable_events(events)]


async def test_simulate_and_the_real_workflow_agree_to_the_microsecond(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    """One urgent ticket on the real workflow and worker (time-skipping server): its first-response
    ladder (warning, breach), acknowledged late, paused for two hours, its resolution ladder (warning,
    breach, escalation to tier 2, CC), resolved, reopened. Then the simulation, given the instants
    at which the real ticket took each input (the server runs a timer a few milliseconds after its
    due instant), must write the same timeline to the microsecond: every deadline, every instant,
    every detail, and the same notices."""
    doc = policy_doc()
    async with make_harness(ts_env, receiver, doc) as h:
        t = ticket(priority="urgent")  # tier 1: first response 30 min, resolution 8 h
        await h.tickets.open(t)
        wid = workflow_id_for(t.ticket_id)
        life = (await h.client.get_workflow_handle(wid).describe()).run_id
        sent: list[tuple[str, dict[str, Any]]] = []
        ann = {"id": "ann", "role": "agent"}
        steps: list[tuple[timedelta, str, dict[str, Any]]] = [
            (timedelta(minutes=40), "acknowledge", {"actor": ann}),
            (timedelta(minutes=20), "pending_customer", {"actor": ann}),
            (timedelta(hours=2), "customer_replied", {"note": "here it is"}),
            (timedelta(hours=8), "resolve", {"actor": ann, "resolution": "done"}),
            (timedelta(hours=1), "reopen", {"actor": ann, "reason": "not fixed"}),
        ]
        for wait, name, payload in steps:
            await ts_env.sleep(wait)
            await h.tickets.act(t.ticket_id, name, payload)
            sent.append((name, payload))
        await ts_env.sleep(timedelta(hours=1))
        real = (await h.tickets.timeline(t.ticket_id)).events
        version = h.settings.policy_path

    kinds = [e.kind for e in real]
    # Durations in the one notation at the source, the workflow's own timeline (not rewritten on export).
    assert {e.detail["target"] for e in real if e.kind == "sla_started"} == {"PT30M", "PT8H", "PT15M", "PT4H"}
    for wanted in ("ladder_step", "sla_breached", "sla_paused", "sla_resumed", "escalated", "resolved", "reopened"):
        assert wanted in kinds, kinds
    # The instants the real ticket took its inputs: each action at its event's instant, every other
    # row's instant as a timer's (a breach's: its `noticed_at`; its row is dated at the deadline); a
    # tick with nothing due does nothing.
    produced = {"acknowledge": "acknowledged", "pending_customer": "sla_paused", "customer_replied": "sla_resumed"}
    actions: list[tuple[datetime, str, dict[str, Any]]] = []
    for name, payload in sent:
        kind = produced.get(name, name + "d" if name.endswith("e") else name + "ed")
        at = next(e.at for e in real if e.kind == kind and e.at not in [a for a, _, _ in actions])
        actions.append((at, name, payload))
    action_instants = {at for at, _, _ in actions}
    ticks = {e.at for e in comparable_events(real) if e.kind != "sla_breached" and e.at not in action_instants}
    ticks |= {datetime.fromisoformat(e.detail["noticed_at"]) for e in real if e.kind == "sla_breached"}
    opened = next(e for e in real if e.kind == "ticket_opened")

    source = load_policy_file(version)

    def as_the_real_ticket() -> Simulation:
        """The simulated ticket under the policy the real one froze, opened at its start, with its ids."""
        return Simulation.open(
            ticket_policy(source, opened.at.year, webhook_url_set=True),
            source.version_label(version),
            t,
            started_at=opened.at,
            workflow_id=wid,
            life=life,
        )

    sim = as_the_real_ticket()
    inputs: list[tuple[datetime, int, str, dict[str, Any]]] = [(at, 0, "", {}) for at in ticks - {opened.at}]
    inputs = sorted(inputs + [(at, 1, name, payload) for at, name, payload in actions])
    for at, is_action, name, payload in inputs:
        if is_action:
            assert sim.act(at, name, payload, exact=False) is None
        else:
            sim.tick(at)

    assert len(comparable(real)) > 20
    assert comparable(sim.timeline) == comparable(real)
    delivered = sorted(e.detail["key"] for e in real if e.kind == "notification_delivered")
    assert sorted(s.notice.key for s in sim.sent if s.notice.activity != "reassign") == delivered

    # The simulator's own schedule (each timer at its exact due instant, given only the actions):
    # the same rows in the same order, each within a second of the real one (the server's lag).
    exact = as_the_real_ticket()
    exact.run(actions, until=max(e.at for e in real))
    ours, theirs = comparable_events(exact.timeline), comparable_events(real)
    assert [(e.kind, e.actor) for e in ours] == [(e.kind, e.actor) for e in theirs]
    assert all(abs(a.at - b.at) < timedelta(seconds=1) for a, b in zip(ours, theirs, strict=True))


def test_a_pause_at_an_exact_instant_moves_the_deadline_exactly(tmp_path: Path) -> None:
    """Paused at 10:00:00 sharp with 3 h of resolution time left, resumed at 14:00:00 sharp: the
    deadline is 17:00:00 sharp, not a millisecond either side (and the breach fires then)."""
    t = urgent_social_post().model_copy(update={"opened_at": datetime.fromisoformat(TUESDAY)})
    timeline: list[TimelineEvent] = []
    run_simulation(social_policy(tmp_path), t, agent_events(), days=1, timeline_out=timeline)
    paused = next(e for e in timeline if e.kind == "sla_paused")
    resumed = next(e for e in timeline if e.kind == "sla_resumed")
    breach = next(e for e in timeline if e.kind == "sla_breached" and e.detail["clock"] == "resolution")
    berlin = datetime.fromisoformat(TUESDAY).tzinfo
    assert paused.at == datetime(2035, 5, 15, 10, tzinfo=berlin)
    assert resumed.at == datetime(2035, 5, 15, 14, tzinfo=berlin)
    assert datetime.fromisoformat(resumed.detail["deadlines"]["resolution"]) == datetime(2035, 5, 15, 17, tzinfo=berlin)
    assert breach.at == datetime(2035, 5, 15, 17, tzinfo=berlin)


async def test_a_ticket_that_completes_within_the_simulated_days(tmp_path: Path) -> None:
    """Resolved after an hour, its reopen window (7 days) closes within the 9 simulated days: the
    ticket completes, and the schedule still prints, one row per line whatever the resolution says."""
    resolve = {"actor": {"id": "ann", "role": "agent"}, "resolution": "done | <ok>\nfine\u202e"}
    events = [SimEvent.model_validate({"after": "PT1H", "action": "resolve", "payload": resolve})]
    lines = run_simulation(social_policy(tmp_path), urgent_social_post(), events, days=9)
    assert any(line.startswith("Fri 2035-05-11 17:55:00 CEST | resolved") for line in lines)
    assert all("\n" not in line and "\u202e" not in line for line in lines)
    assert "NOTIFY ticket.resolved" in lines[-1] and lines[-1].endswith("done | <ok>\\nfine\\u202e")
