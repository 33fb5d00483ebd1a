"""`policy simulate`: what would the real workflow do with this ticket under this policy?

Runs the workflow's own decisions (`workflows/simulation.py`: `open_ticket`, `next_due`, `decide`)
at exact instants under the policy a ticket would freeze, with every notice delivered on the spot
and nothing sent anywhere. No server is needed. Prints every deadline and every action in the
route calendar's local time.
"""

from __future__ import annotations

import argparse
import json
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from api.export import normalize_entry
from config.policy import PolicyError, load_policy_file
from config.snapshots import ticket_policy
from workflows.durations import as_iso
from workflows.models import ACTIONS, Ticket, TimelineEvent, workflow_id_for
from workflows.simulation import Simulation


class SimEvent(BaseModel):
    """An agent or customer action at an offset after the ticket opens (ISO 8601 duration)."""

    after: timedelta
    action: str
    payload: dict[str, Any] = Field(default_factory=dict)


def _seq(event_id: str) -> int:
    return int(event_id.rsplit("_", 1)[-1])


def _local(value: datetime, zone: ZoneInfo) -> str:
    """Local time to the second, with the fraction when there is one (`09:06:15.5`): exact, readable."""
    local = value.astimezone(zone)
    fraction = f".{local.microsecond:06d}".rstrip("0") if local.microsecond else ""
    return local.strftime("%a %Y-%m-%d %H:%M:%S") + fraction + local.strftime(" %Z")


def _describe(kind: str, detail: dict[str, Any], zone: ZoneInfo) -> str:
    def when(key: str) -> str:
        raw = detail.get(key)
        return _local(datetime.fromisoformat(raw), zone) if raw else "-"

    def target() -> str:
        return as_iso(str(detail.get("target"))) or str(detail.get("target"))

    if kind == "sla_started":
        return f"{detail['clock']} clock starts: target {target()}, deadline {when('deadline')}"
    if kind == "ladder_step":
        return f"{detail['rule']} fires: {detail['reason']}"
    if kind == "sla_breached":
        return f"{detail['clock']} SLA breached (deadline was {when('deadline')})"
    if kind == "routed":
        return f"route {detail['route']}: {detail['reason']}"
    if kind == "tier_entered":
        return f"tier {detail['tier']}, department {detail['department']}, queue {detail['queue']} ({detail['why']})"
    if kind == "escalated":
        if detail.get("kind") == "hierarchical":
            return f"escalated tier {detail['from_tier']} -> {detail['to_tier']}: {detail['reason']}"
        return f"escalated to department {detail['to_department']}: {detail['reason']}"
    if kind == "priority_changed":
        return f"priority {detail['from']} -> {detail['to']}; deadlines now " + ", ".join(
            f"{k} {_local(datetime.fromisoformat(v), zone) if v else '-'}" for k, v in detail["deadlines_after"].items()
        )
    if kind == "sla_resumed":
        return "resumed; deadlines now " + ", ".join(
            f"{k} {_local(datetime.fromisoformat(v), zone)}" for k, v in detail.get("deadlines", {}).items()
        )
    shown = normalize_entry({"detail": detail})["detail"]
    return json.dumps(shown, ensure_ascii=False, sort_keys=True) if shown else ""


def schedule_lines(events: list[TimelineEvent], sent: list[tuple[datetime, int, str]], zone: ZoneInfo) -> list[str]:
    """The printed schedule: the workflow's decisions and what they sent, in local time.

    Same-instant ties: the decisions in their own order, then what they sent, by sequence."""
    rows: list[tuple[datetime, int, int, str]] = [
        (e.at, 0, index, f"{e.kind}: {_describe(e.kind, e.detail, zone)}".removesuffix(": "))
        for index, e in enumerate(events)
        if not e.kind.startswith("notification")
    ]
    rows += [(at, 1, seq, text) for at, seq, text in sent]
    ordered = sorted(rows, key=lambda r: (r[0], r[1], r[2]))
    return [f"{_local(at, zone)} | {_one_line(text)}" for at, _, _, text in ordered]


def _one_line(text: str) -> str:
    """One row per line, whatever a reason holds: line breaks and invisible characters as escapes."""
    return "".join(json.dumps(ch)[1:-1] if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)


def sent_lines(sim: Simulation) -> list[tuple[datetime, int, str]]:
    """What the simulation sent and refused, as `(instant, sequence, line)` for `schedule_lines`."""
    rows: list[tuple[datetime, int, str]] = []
    for sent in sim.sent:
        request = sent.notice.deliver
        if request is None:  # a helpdesk reassignment: on the timeline already
            continue
        e = request.event
        if sent.notice.activity == "cc_department_heads":
            line = f"CC {', '.join(p.id for p in e.cc)} [{e.rule}] {e.reason}"
        else:
            who = ", ".join(p.id for p in e.recipients) or "-"
            line = f"NOTIFY {e.type} to {who} [{e.rule or 'action'}] {e.reason}"
        rows.append((e.occurred_at, _seq(e.id), line))
    rows += [(r.at, 0, f"REFUSED {r.action}: {r.refusal}") for r in sim.refused]
    return rows


def run_simulation(
    policy_file: Path,
    ticket: Ticket,
    events: list[SimEvent],
    days: float,
    *,
    timeline_out: list[TimelineEvent] | None = None,
) -> list[str]:
    """Return the printed schedule, one line per decision, in the route calendar's local time.

    Each simulated action happens at exactly its requested instant and every timer at exactly its
    due instant, so the schedule is the one a real ticket gets when nothing runs late, to the
    microsecond. `timeline_out` receives the ticket's timeline."""
    source = load_policy_file(policy_file)
    opened = ticket.opened_at
    if opened is None:
        opened = datetime.now(UTC)
        ticket = ticket.model_copy(update={"opened_at": opened})
    opened = opened.astimezone(UTC)  # workflow time is UTC
    policy = ticket_policy(source, opened.year)
    sim = Simulation.open(
        policy,
        source.version_label(policy_file),
        ticket,
        started_at=opened,
        workflow_id=workflow_id_for(ticket.ticket_id),
    )
    actions = [
        (opened + e.after, e.action, ACTIONS[e.action].model_validate(e.payload).model_dump(mode="json"))
        for e in events
    ]
    sim.run(actions, until=opened + timedelta(days=days))
    if timeline_out is not None:
        timeline_out.extend(sim.timeline)
    route_calendar = next(e.detail["calendar"] for e in sim.timeline if e.kind == "routed")
    zone = ZoneInfo(policy.calendars[route_calendar].timezone)
    return schedule_lines(sim.timeline, sent_lines(sim), zone)


def simulate(args: argparse.Namespace) -> int:
    from cli.app import CliError, ExitCode, read_json, validation_message

    try:
        ticket = Ticket.model_validate(read_json(args.ticket, "--ticket"))
        events = TypeAdapter(list[SimEvent]).validate_python(read_json(args.events, "--events")) if args.events else []
        for e in events:
            if e.action not in ACTIONS:
                raise ValueError(f"events: unknown action {e.action!r}")
        lines = run_simulation(Path(args.file), ticket, events, args.days)
    except PolicyError as err:
        raise CliError(str(err), ExitCode.BAD_INPUT) from None
    except ValidationError as err:
        raise CliError(f"invalid input: {validation_message(err)}", ExitCode.BAD_INPUT) from None
    except ValueError as err:
        raise CliError(" ".join(str(err).split()), ExitCode.BAD_INPUT) from None
    if getattr(args, "json", False):  # --json: one object per line of the schedule
        print(json.dumps([dict(zip(("at", "event"), line.split(" | ", 1), strict=False)) for line in lines], indent=2))
    else:
        print("\n".join(lines))
    return 0
