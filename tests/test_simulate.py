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
from pathlib import Path

import yaml

from cli.simulate import SimEvent, run_simulation
from config.settings import DEFAULT_POLICY
from workflows.models import Ticket

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
        "Fri 2035-05-11 16:55:00 CEST | routed: route public-social: routes[0] (public-social) matched on "
        "channel=social_public",
        "Fri 2035-05-11 16:55:00 CEST | sla_started: first_response clock starts: target 0:15:00, "
        "deadline Tue 2035-05-15 09:10:00 CEST",
        "Fri 2035-05-11 16:55:00 CEST | sla_started: resolution clock starts: target 4:00:00, "
        "deadline Tue 2035-05-15 13:55:00 CEST",
        "Tue 2035-05-15 09:06:15 CEST | ladder_step: ladders.first_response[0] (fr-warning) fires: "
        "first_response SLA at 75% of target",
        "Tue 2035-05-15 09:06:15 CEST | NOTIFY sla.warning to support-t1",
        "Tue 2035-05-15 09:10:00 CEST | sla_breached: first_response SLA breached",
        "Tue 2035-05-15 09:10:00 CEST | NOTIFY sla.breached to support-t1, lee.lead",
        "Tue 2035-05-15 12:07:00 CEST | ladder_step: ladders.resolution[0] (res-warning) fires",
        "Tue 2035-05-15 13:55:00 CEST | sla_breached: resolution SLA breached",
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
