"""`policy simulate`: what would the real workflow do with this ticket under this policy?

Runs the real `TicketEscalation` code on the time-skipping test server with the real policy
loader; only the outbound side effects are replaced by recorders, so nobody is paged by a
simulation. Prints every deadline and every action in the calendar's local time.
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.models import DeliverInput, DeliveryResult, ReassignInput, ReassignResult
from activities.ticket_activities import TicketActivities
from config.policy import PolicyError, load_policy_file
from config.settings import Settings
from workers.connection import binary, register_search_attributes
from workflows.models import ACTIONS, WORKFLOW_TYPE, Ticket, Timeline, workflow_id_for
from workflows.ticket import TicketEscalation


class SimEvent(BaseModel):
    """An agent or customer action at an offset after the ticket opens (ISO 8601 duration)."""

    after: timedelta
    action: str
    payload: dict[str, Any] = Field(default_factory=dict)


def _seq(event_id: str) -> int:
    return int(event_id.rsplit("_", 1)[-1])


def _local(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%a %Y-%m-%d %H:%M:%S %Z")


def _describe(kind: str, detail: dict[str, Any], zone: ZoneInfo) -> str:
    def when(key: str) -> str:
        raw = detail.get(key)
        return _local(datetime.fromisoformat(raw), zone) if raw else "-"

    if kind == "sla_started":
        return f"{detail['clock']} clock starts: target {detail['target']}, deadline {when('deadline')}"
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
    shown = {k: v for k, v in detail.items() if v not in (None, "", [], {})}
    return json.dumps(shown, default=str) if shown else ""


async def run_simulation(policy_file: Path, ticket: Ticket, events: list[SimEvent], days: float) -> list[str]:
    """Return the printed schedule, one line per decision, in the route calendar's local time."""
    policy = load_policy_file(policy_file)
    settings = Settings(policy_path=policy_file, _env_file=None)
    sent: list[tuple[datetime, int, str]] = []  # (when, event sequence, line), appended as activities run

    @activity.defn(name="notify")
    async def notify(request: DeliverInput) -> DeliveryResult:
        e = request.event
        who = ", ".join(p.id for p in e.recipients) or "-"
        sent.append((e.occurred_at, _seq(e.id), f"NOTIFY {e.type} to {who} [{e.rule or 'action'}] {e.reason}"))
        return DeliveryResult(webhook_id=e.id, endpoint=request.endpoint.name, status_code=200, attempt=1)

    @activity.defn(name="cc_department_heads")
    async def cc(request: DeliverInput) -> DeliveryResult:
        e = request.event
        sent.append((e.occurred_at, _seq(e.id), f"CC {', '.join(p.id for p in e.cc)} [{e.rule}] {e.reason}"))
        return DeliveryResult(webhook_id=e.id, endpoint=request.endpoint.name, status_code=200, attempt=1)

    @activity.defn(name="reassign")
    async def reassign(request: ReassignInput) -> ReassignResult:
        return ReassignResult(outcome="skipped", detail="simulation")

    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(binary("temporal-test-server"))
    )
    lines: list[str] = []
    try:
        await register_search_attributes(env.client, "default")
        opened = ticket.opened_at
        now = await env.get_current_time()
        if opened is None:
            opened = now
            ticket = ticket.model_copy(update={"opened_at": now})
        elif opened < now:
            raise ValueError(
                f"opened_at {opened.isoformat()} is in the past; the time-skipping server only moves forward, "
                "so simulate with a future opened_at"
            )
        await env.sleep(opened - now)
        # Endpoints are needed for notifications to be scheduled; they go to the recorders above.
        loader = TicketActivities(settings, None)  # type: ignore[arg-type]
        task_queue = f"simulate-{uuid.uuid4().hex[:8]}"
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[TicketEscalation],
            activities=[loader.load_policy, notify, cc, reassign],
        ):
            handle = await env.client.start_workflow(
                WORKFLOW_TYPE, ticket, id=workflow_id_for(ticket.ticket_id), task_queue=task_queue
            )
            clock = opened
            for event in sorted(events, key=lambda e: e.after):
                target = opened + event.after
                if target > clock:
                    await env.sleep(target - clock)
                    clock = target
                model = ACTIONS[event.action]
                try:
                    await handle.execute_update(event.action, model.model_validate(event.payload))
                except WorkflowUpdateFailedError as err:
                    reason = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause)
                    sent.append((clock, 0, f"REFUSED {event.action}: {reason}"))
            end = opened + timedelta(days=days)
            if end > clock:
                await env.sleep(end - clock)
            timeline = await handle.query("timeline", result_type=Timeline)
            await handle.terminate("simulation finished")
    finally:
        await env.shutdown()

    route_calendar = next(e.detail["calendar"] for e in timeline.events if e.kind == "routed")
    zone = ZoneInfo(policy.calendars[route_calendar].timezone)
    # Same-instant ties: the workflow's decisions in their own order, then what they sent, by sequence.
    rows: list[tuple[datetime, int, int, str]] = [
        (e.at, 0, index, f"{e.kind}: {_describe(e.kind, e.detail, zone)}")
        for index, e in enumerate(timeline.events)
        if not e.kind.startswith("notification")
    ]
    rows += [(at, 1, seq, text) for at, seq, text in sent]
    for at, _, _, text in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
        lines.append(f"{_local(at, zone)} | {text}")
    return lines


async def simulate(args: argparse.Namespace) -> int:
    from cli.app import CliError, ExitCode, read_json, validation_message

    try:
        ticket = Ticket.model_validate(read_json(args.ticket, "--ticket"))
        events = TypeAdapter(list[SimEvent]).validate_python(read_json(args.events, "--events")) if args.events else []
        for e in events:
            if e.action not in ACTIONS:
                raise ValueError(f"events: unknown action {e.action!r}")
        lines = await run_simulation(Path(args.file), ticket, events, args.days)
    except PolicyError as err:
        raise CliError(str(err), ExitCode.BAD_INPUT) from None
    except ValidationError as err:
        raise CliError(f"invalid input: {validation_message(err)}", ExitCode.BAD_INPUT) from None
    except ValueError as err:
        raise CliError(" ".join(str(err).split()), ExitCode.BAD_INPUT) from None
    print("\n".join(lines))
    return 0
