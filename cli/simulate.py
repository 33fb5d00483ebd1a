"""`policy simulate`: what would the real workflow do with this ticket under this policy?

Runs the real `TicketEscalation` code on the time-skipping test server with the real policy
loader; only the outbound side effects are replaced by recorders, so nobody is paged by a
simulation. Prints every deadline and every action in the calendar's local time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from temporalio import activity
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker, WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner

from activities.ticket_activities import TicketActivities
from api.export import as_duration, normalize_entry
from config.policy import PolicyError, load_policy_file
from config.settings import Settings
from workers.connection import binary, register_search_attributes
from workers.sandbox import sandboxed_runner
from workflows.messages import DeliverInput, DeliveryResult, ReassignInput, ReassignResult
from workflows.models import ACTIONS, WORKFLOW_TYPE, Ticket, Timeline, TimelineEvent, workflow_id_for
from workflows.ticket import TicketEscalation


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
        return as_duration(str(detail.get("target"))) or str(detail.get("target"))

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


# ---------------------------------------------------------------------- exact instants
class ExactClock:
    """What the simulation knows about instants: when the ticket opens, when each simulated action
    happens (by update id), and when each of the ticket's timers is due."""

    def __init__(self, opened: datetime) -> None:
        self.opened = opened
        self.actions: dict[str, datetime] = {}
        self.timers: dict[int, datetime] = {}  # the current instance's timers: seq -> exact instant due
        self.out_of_order = 0

    def due_by(self, instant: datetime) -> bool:
        return any(at <= instant for at in self.timers.values())


class _ExactInstance(WorkflowInstance):
    """Runs each activation at the exact instant of what triggered it.

    The test server's clock runs on in real time while a workflow task waits for the worker, so a
    timer's or an update's task starts a few milliseconds after its instant, and every decision
    taken at `workflow.now()` would inherit that lateness. This wrapper sets the activation's
    time to the trigger's own instant (the timer's due instant as the workflow computed it, the
    requested instant of a simulated action, the opening for the first task; deliveries to the
    recorders take no time), and shortens the timers the workflow starts by the lateness of the
    task that started them, so the server's clock keeps up. The workflow code runs unchanged."""

    def __init__(self, inner: WorkflowInstance, clock: ExactClock) -> None:
        self._inner = inner
        self._clock = clock
        # Per instance: a replayed instance (after an eviction, or to answer a query on a closed
        # ticket) rebuilds them from the same activations and commands, so it decides the same.
        self.timers: dict[int, datetime] = {}
        self.last: datetime | None = None
        clock.timers = self.timers

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        clock = self._clock
        timers = self.timers
        served = act.timestamp.ToDatetime(tzinfo=UTC)
        triggers: list[datetime] = []
        for job in act.jobs:
            which = job.WhichOneof("variant")
            if which == "initialize_workflow":
                triggers.append(clock.opened)
            elif which == "fire_timer" and job.fire_timer.seq in timers:
                triggers.append(timers.pop(job.fire_timer.seq))
            elif which == "do_update" and job.do_update.id in clock.actions:
                triggers.append(clock.actions[job.do_update.id])
        exact = max(triggers) if triggers else self.last
        if exact is not None and self.last is not None and exact < self.last:
            clock.out_of_order += 1  # a trigger arrived after a later one: keep time monotonic
            exact = self.last
        if exact is not None:
            act.timestamp.FromDatetime(exact)
            self.last = exact
        completion = self._inner.activate(act)
        if exact is None or not completion.HasField("successful"):
            return completion
        lateness = max(served - exact, timedelta(0))
        for command in completion.successful.commands:
            if command.HasField("start_timer"):
                timer = command.start_timer
                wait = timer.start_to_fire_timeout.ToTimedelta()
                timers[timer.seq] = exact + wait
                timer.start_to_fire_timeout.FromTimedelta(max(wait - lateness, timedelta(milliseconds=1)))
            elif command.HasField("cancel_timer"):
                timers.pop(command.cancel_timer.seq, None)
        return completion

    def get_serialization_context(self, command_info: Any) -> Any:
        return self._inner.get_serialization_context(command_info)

    def get_external_store_context(self, command_info: Any) -> Any:
        return self._inner.get_external_store_context(command_info)

    def get_info(self) -> Any:
        return self._inner.get_info()


class ExactRunner(WorkflowRunner):
    """The worker's (sandboxed) runner, with every instance wrapped in `_ExactInstance`."""

    def __init__(self, clock: ExactClock, inner: WorkflowRunner | None = None) -> None:
        self._inner = inner or sandboxed_runner()
        self._clock = clock

    def prepare_workflow(self, defn: Any) -> None:
        self._inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        # The ticket opens at the workflow's start time: the simulated opening instant, exactly.
        info = dataclasses.replace(det.info, workflow_start_time=self._clock.opened, start_time=self._clock.opened)
        return _ExactInstance(self._inner.create_instance(dataclasses.replace(det, info=info)), self._clock)

    def set_worker_level_failure_exception_types(self, types: Any) -> None:
        self._inner.set_worker_level_failure_exception_types(types)


async def _sleep_until(env: WorkflowEnvironment, instant: datetime) -> None:
    """Move the test server's clock to `instant`, measured from the server's own current time."""
    now = await env.get_current_time()
    if instant > now:
        await env.sleep(instant - now)


async def _settle(clock: ExactClock, instant: datetime, env: WorkflowEnvironment) -> None:
    """Let the ticket's timers due by `instant` fire first (the server runs them a few milliseconds
    late), so the next simulated action comes after them, as it would on time."""
    for _ in range(3000):  # 30 s of real time: a loaded machine can take seconds for one task
        if not clock.due_by(instant):
            return
        await asyncio.sleep(0.01)
    raise RuntimeError("simulation: the ticket's timers did not fire; is the worker stuck?")


def _quiet_runtime() -> Runtime:
    """A Temporal runtime that logs errors only: the test server does not advertise capabilities
    the SDK asks about, and its warning is noise for someone simulating a policy."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        )
    )


async def run_simulation(
    policy_file: Path,
    ticket: Ticket,
    events: list[SimEvent],
    days: float,
    *,
    timeline_out: list[TimelineEvent] | None = None,
) -> list[str]:
    """Return the printed schedule, one line per decision, in the route calendar's local time.

    Each simulated action happens at exactly its requested instant and every timer at exactly its
    due instant (see `_ExactInstance`), so the schedule is the one a real ticket gets when nothing
    runs late, to the microsecond. `timeline_out` receives the workflow's own timeline."""
    policy = load_policy_file(policy_file)
    # No record store: a simulation writes nothing anywhere (and has no store_events activity)
    settings = Settings(policy_path=policy_file, store_events=False, _env_file=None)
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
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(binary("temporal-test-server")),
        runtime=_quiet_runtime(),
    )
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
        await _sleep_until(env, opened)
        clock = ExactClock(opened)
        # Endpoints are needed for notifications to be scheduled; they go to the recorders above.
        loader = TicketActivities(settings, None)  # type: ignore[arg-type]
        task_queue = f"simulate-{uuid.uuid4().hex[:8]}"
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[TicketEscalation],
            activities=[loader.load_policy, notify, cc, reassign],
            workflow_runner=ExactRunner(clock),
        ):
            handle = await env.client.start_workflow(
                WORKFLOW_TYPE, ticket, id=workflow_id_for(ticket.ticket_id), task_queue=task_queue
            )
            ordered = sorted(enumerate(events), key=lambda item: (item[1].after, item[0]))
            for index, event in ordered:
                target = opened + event.after
                await _sleep_until(env, target)
                await _settle(clock, target, env)
                update_id = f"simulated-{index}"
                clock.actions[update_id] = target
                model = ACTIONS[event.action]
                try:
                    await handle.execute_update(event.action, model.model_validate(event.payload), id=update_id)
                except WorkflowUpdateFailedError as err:
                    reason = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause)
                    sent.append((target, 0, f"REFUSED {event.action}: {reason}"))
            end = opened + timedelta(days=days)
            await _sleep_until(env, end)
            await _settle(clock, end, env)
            timeline = await handle.query("timeline", result_type=Timeline)
            with contextlib.suppress(RPCError):  # a ticket whose reopen window closed has completed
                await handle.terminate("simulation finished")
        if clock.out_of_order:
            raise RuntimeError(
                f"simulation: {clock.out_of_order} trigger(s) reached the ticket after a later one; "
                "events a few milliseconds apart cannot be simulated exactly"
            )
    finally:
        await env.shutdown()

    if timeline_out is not None:
        timeline_out.extend(timeline.events)
    route_calendar = next(e.detail["calendar"] for e in timeline.events if e.kind == "routed")
    zone = ZoneInfo(policy.calendars[route_calendar].timezone)
    return schedule_lines(timeline.events, sent, zone)


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
    if getattr(args, "json", False):  # --json: one object per line of the schedule
        print(json.dumps([dict(zip(("at", "event"), line.split(" | ", 1), strict=False)) for line in lines], indent=2))
    else:
        print("\n".join(lines))
    return 0
