"""Fuzzing the ticket's signals and updates, and replaying random histories, on the real dev server.

1. Two thousand random signals and updates (every action name and unknown ones; no argument, null,
   raw and undecodable payloads, wrong types, missing fields, 3,000-character strings, megabyte
   notes, valid payloads from every role) must never fail a workflow task, end a ticket or count an
   internal error; afterwards every ticket still answers queries and takes a valid action.
   A workflow task the server refuses because new signals raced a continue-as-new is counted and
   printed, not failed: the SDK retries it, and no ticket code ran wrong.
2. 100 tickets driven by random valid action sequences under short SLAs (ladders escalate
   some, some are resolved, paused, or complete); a few run on a worker without a workflow cache,
   so every one of their tasks replays from scratch, the rest on the product's worker. Then every
   history replays on the current code with `Replayer`. Histories that do not replay are saved
   under the test's tmp_path for `escalations replay --history FILE`.

Both print their counts (`pytest -s`); each takes about 15-35 s and 60 s on two busy cores.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHistory,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.ticket_activities import TicketActivities
from api.client import ActionRefused, TicketClient
from config.policy import Priority
from tests.conftest import TEST_CONVERTER, make_settings, policy_doc
from tests.helpers import LEAD, ticket
from tests.receiver import Receiver
from workers.worker import build_worker
from workflows import search_attributes as sa
from workflows.models import ACTIONS, State, Ticket, TicketStatus, workflow_id_for
from workflows.ticket import TicketEscalation

ACTION_NAMES = sorted(ACTIONS)
ROLES = ("agent", "lead", "manager", "system")
PEOPLE = ("ann", "lee.lead", "dana.head", "bo.lead", "tia.lead", "sys")
PRIORITIES = ("low", "normal", "high", "urgent")
DEPARTMENTS = ("support", "billing", "technical", "legal")
QUEUES = ("support-t1", "support-t2", "billing-t1", "billing-t3", "tech-t2", "support-tier9", "no-such-queue")
ODD_NAMES = (
    "close",
    "Acknowledge",
    "acknowledge ",
    "",
    "status",
    "timeline",
    "__stack_trace",
    "__temporal_workflow_metadata",
    "résoudre-✓",
    "escalate\x00",
    "x" * 3000,
)
LONG = "ab€ü" * 750  # 3,000 characters, 6,000 UTF-8 bytes
MEGA = "m" * 1_000_000
WEIRD = ("", " ", "\x00", "a\u202eb", "🎫" * 100, "' OR 1=1 --", "\n\t\r", "null", "<script>x</script>")
KINDS: dict[str, int] = {  # payload kind -> weight
    "valid": 30,
    "none": 6,
    "null": 6,
    "bytes": 4,
    "raw_binary": 3,
    "raw_bad_json": 3,
    "raw_unknown_encoding": 2,
    "raw_no_metadata": 2,
    "raw_nan": 2,
    "raw_deep": 1,
    "raw_surrogate": 2,
    "wrong_type": 8,
    "missing": 8,
    "extra": 4,
    "field_wrong": 8,
    "long_all": 5,
    "long_one": 5,
    "weird": 5,
    "multi": 3,
}
OK_STATUSES = (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)

# These tests load both cores and assert on timing: they run one after the other on one xdist worker
# (`--dist loadgroup`, pyproject.toml), never at the same time as another test of the group "load".
pytestmark = pytest.mark.xdist_group("load")


# ---------------------------------------------------------------------- policy
def short_sla_policy(
    *, reopen_window: str, targets: dict[str, tuple[str, str]], self_service_wait: str
) -> dict[str, Any]:
    """The default policy on a 24x7 calendar with SLAs of seconds: ladders fire while the test runs."""
    doc = policy_doc()
    for tier in doc["sla"].values():
        for priority, clock in tier.items():
            first_response, resolution = targets[priority]
            clock.update(first_response=first_response, resolution=resolution)
    for route in doc["routes"]:
        route.pop("targets", None)
        if route.get("self_service"):
            route["self_service"]["wait"] = self_service_wait
    for step in doc["ladders"]["resolution"]:
        if step.get("repeat"):
            step["repeat"] = {"interval": "PT5S", "count": 3}
    doc["guards"]["min_time_in_tier"] = "PT5S"
    doc["approvals"] = {"timeout": "PT10S"}
    doc["reopen_window"] = reopen_window
    return doc


# ---------------------------------------------------------------------- payloads
def actor(rng: random.Random, role: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"id": rng.choice(PEOPLE), "role": role or rng.choice(ROLES)}
    if rng.random() < 0.5:
        found["tier"] = rng.randint(0, 4)
    return found


def valid_payload(rng: random.Random, name: str, role: str | None = None) -> dict[str, Any]:
    """A payload its action's model accepts (the ticket's state or the policy may still refuse it)."""
    a = actor(rng, role)
    reason = rng.choice(("customer is blocked", "needs a specialist", "", "per policy"))
    note = rng.choice((None, "on it", "waiting for logs"))
    payloads: dict[str, Callable[[], dict[str, Any]]] = {
        "acknowledge": lambda: {"actor": a, "note": note},
        "reassign": lambda: {
            "actor": a,
            "to_agent": rng.choice((None, "ann", "bob", "lee.lead")),
            "to_queue": rng.choice((None, *QUEUES)),
            "reason": reason,
        },
        "escalate": lambda: {
            "actor": a,
            "kind": rng.choice(("hierarchical", "functional")),
            "department": rng.choice((None, *DEPARTMENTS)),
            "reason": reason,
            "to_tier": rng.choice((None, None, 1, 2, 3, 4, 7)),
        },
        "pending_customer": lambda: {"actor": a, "note": note},
        "customer_replied": lambda: {"note": note},
        "confirm_solved": lambda: {"note": note},
        "change_priority": lambda: {"actor": a, "priority": rng.choice(PRIORITIES), "reason": reason},
        "resolve": lambda: {"actor": a, "resolution": rng.choice(("fixed", "workaround sent", "duplicate"))},
        "reopen": lambda: {"actor": a, "reason": reason},
        "request_approval": lambda: {
            "actor": a,
            "kind": rng.choice(("refund", "discount")),
            "amount": rng.choice((10, 49.5, 400, 2_000, 20_000)),
            "reason": reason,
        },
        "decide_approval": lambda: {
            "actor": a,
            "approval_id": f"apr-{rng.randint(1, 4)}",
            "approved": rng.random() < 0.5,
            "note": note,
        },
        "redeliver": lambda: {"actor": a, "reason": reason},
        "discard_notices": lambda: {"actor": a, "reason": reason},
    }
    # An action added to the contract later: most take an actor and a reason.
    return payloads.get(name, lambda: {"actor": a, "reason": reason})()


def string_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in string_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in string_paths(v, (*path, i))]
    return []


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A deep copy of `value` with the leaf at `path` replaced (the whole value if `path` is empty)."""
    if not path:
        return new
    out = copy.deepcopy(value)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = new
    return out


def raw(encoding: bytes | None, data: bytes) -> RawValue:
    return RawValue(Payload(metadata={"encoding": encoding} if encoding is not None else {}, data=data))


def fuzz_args(rng: random.Random, name: str, kind: str) -> list[Any]:
    """The arguments of one fuzzed signal or update: `[]` is no argument at all."""
    base = valid_payload(rng, name if name in ACTIONS else rng.choice(ACTION_NAMES))
    keys = list(base)
    paths = string_paths(base)
    if kind == "valid":
        return [base]
    if kind == "none":
        return []
    if kind == "null":
        return [None]
    if kind == "bytes":
        return [rng.randbytes(rng.randint(0, 64))]
    if kind == "raw_binary":
        return [raw(b"binary/plain", rng.randbytes(rng.randint(1, 256)))]
    if kind == "raw_bad_json":
        junk = (b'{"actor": ', b"\xff\xfe{}", b"", b"nul", b"{'single': 1}", b'{"a": 1}}', b"\x00")
        return [raw(b"json/plain", rng.choice(junk))]
    if kind == "raw_unknown_encoding":
        return [
            raw(rng.choice((b"application/x-fuzz", b"json/protobuf", b"binary/encrypted")), json.dumps(base).encode())
        ]
    if kind == "raw_no_metadata":
        return [raw(None, json.dumps(base).encode())]
    if kind == "raw_nan":
        number = rng.choice((float("nan"), float("inf"), float("-inf")))
        poisoned = {
            **base,
            "amount": number,
            "actor": {**base.get("actor", {"id": "x", "role": "lead"}), "tier": number},
        }
        return [raw(b"json/plain", json.dumps(poisoned).encode())]
    if kind == "raw_deep":
        depth = rng.choice((300, 5_000))
        return [raw(b"json/plain", b"[" * depth + b"]" * depth)]
    if kind == "raw_surrogate":
        path = rng.choice(paths) if paths else ()
        return [raw(b"json/plain", json.dumps(replaced(base, path, "a\ud800b")).encode())]
    if kind == "wrong_type":
        return [rng.choice(([1, 2, 3], 42, -1, 3.14, 10**400, "acknowledge", True, [base], "", {"": None}))]
    if kind == "missing":
        drop = set(rng.sample(keys, rng.randint(1, len(keys))))
        return [{k: v for k, v in base.items() if k not in drop}]
    if kind == "extra":
        return [{**base, rng.choice(("unexpected", "actor_id", "", "ACTOR")): rng.choice((1, "x", None, [LONG]))}]
    if kind == "field_wrong":
        key = rng.choice(keys)
        if key == "actor" and rng.random() < 0.6:
            sub = rng.choice(("id", "role", "tier"))
            bad: Any = rng.choice(([], {}, 7, 10**400, -5, None, True, "king", 1.5))
            return [{**base, "actor": {**base["actor"], sub: bad}}]
        return [{**base, key: rng.choice(([], {}, 7, 10**400, None, True, "x", -1e308, [None]))}]
    if kind == "long_all":
        return [
            json.loads(
                json.dumps(base), object_hook=lambda d: {k: LONG if isinstance(v, str) else v for k, v in d.items()}
            )
        ]
    if kind == "long_one":
        return [replaced(base, rng.choice(paths), LONG)] if paths else [{**base, "note": LONG}]
    if kind == "weird":
        return (
            [replaced(base, rng.choice(paths), rng.choice(WEIRD))] if paths else [{**base, "note": rng.choice(WEIRD)}]
        )
    if kind == "multi":
        return [base, valid_payload(rng, rng.choice(ACTION_NAMES))]
    raise AssertionError(kind)


@dataclass
class Op:
    workflow_id: str
    via: str  # "signal" or "update"
    name: str
    kind: str
    args: list[Any]


def fuzz_plan(rng: random.Random, workflow_ids: list[str], total: int) -> list[Op]:
    kinds, weights = list(KINDS), list(KINDS.values())
    ops: list[Op] = []
    for _ in range(total):
        name = rng.choice(ACTION_NAMES) if rng.random() < 0.85 else rng.choice(ODD_NAMES)
        kind = rng.choices(kinds, weights)[0]
        via = rng.choice(("signal", "update"))
        ops.append(Op(rng.choice(workflow_ids), via, name, kind, fuzz_args(rng, name, kind)))
    # Megabyte notes: a handful as signals (they reach history), more as updates (refused before history).
    slots = rng.sample(range(total), 16)
    for i, slot in enumerate(slots[:4]):
        name = rng.choice(("customer_replied", "confirm_solved"))
        ops[slot] = Op(workflow_ids[i % len(workflow_ids)], "signal", name, "mega", [{"note": MEGA}])
    for slot in slots[4:]:
        name = rng.choice(("acknowledge", "pending_customer", "customer_replied", "resolve"))
        payload = valid_payload(rng, name)
        payload["resolution" if name == "resolve" else "note"] = MEGA
        ops[slot] = Op(rng.choice(workflow_ids), "update", name, "mega", [payload])
    return ops


# ---------------------------------------------------------------------- sending and tallying
class Tally:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.samples: dict[str, str] = {}

    def add(self, key: str, sample: str | None = None) -> None:
        self.counts[key] += 1
        if sample is not None:
            self.samples.setdefault(key, sample[:400])


def refusal_field(err: WorkflowUpdateFailedError) -> tuple[str, str]:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == "ActionRejected":
        details = cause.details[0] if cause.details else {}
        return str(details.get("field")), str(details.get("reason"))
    return f"!{type(cause).__name__}:{getattr(cause, 'type', None)}", str(cause)


async def send(client: Client, op: Op, tally: Tally) -> None:
    handle = client.get_workflow_handle(op.workflow_id)
    where = f"{op.via} {op.name[:40]!r} kind={op.kind} to {op.workflow_id}"
    try:
        if op.via == "signal":
            await handle.signal(op.name, args=op.args)
            tally.add("signal sent")
        else:
            result = await handle.execute_update(op.name, args=op.args)
            tally.add("update accepted")
            if isinstance(result, dict) and result.get("internal_errors"):
                tally.add("update accepted WITH internal_errors", where)
    except WorkflowUpdateFailedError as err:
        field, reason = refusal_field(err)
        tally.add("update refused")
        tally.add(f"update refused field={field}", f"{where}: {reason}")
    except WorkflowUpdateRPCTimeoutOrCancelledError as err:
        tally.add("update rpc timeout", f"{where}: {err}")
    except RPCError as err:
        tally.add(f"{op.via} rpc error {RPCStatusCode(err.status).name}", f"{where}: {err.message}")
    except Exception as err:  # the client's own failure (e.g. encoding): reported, not a ticket's answer
        tally.add(f"{op.via} client error {type(err).__name__}", f"{where}: {err}")


# ---------------------------------------------------------------------- histories
async def run_ids(client: Client, workflow_id: str) -> list[str]:
    """Every run of a workflow id, oldest first, following continue-as-new back from the latest."""
    latest = (await client.get_workflow_handle(workflow_id).describe()).run_id
    ids = [latest]
    for _ in range(100):
        events = client.get_workflow_handle(workflow_id, run_id=ids[-1]).fetch_history_events()
        first = await anext(aiter(events))
        previous = first.workflow_execution_started_event_attributes.continued_execution_run_id
        if not previous:
            break
        ids.append(previous)
    return ids[::-1]


# The server refuses a workflow task that closes the run (here: continue-as-new) while signals or
# updates arrived meanwhile; the SDK retries it with the new events. Not a failure of ticket code,
# but counted and reported: under a signal storm a ticket can take several tries to continue as new.
RACED = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND


def task_failures(events: list[HistoryEvent], *, raced: Counter[str] | None = None) -> list[str]:
    """Every failed workflow task of a history, with its cause (races with new events only counted)."""
    found = []
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            attrs = e.workflow_task_failed_event_attributes
            cause = WorkflowTaskFailedCause.Name(attrs.cause)
            if raced is not None and attrs.cause == RACED:
                raced[cause] += 1
                continue
            found.append(f"event {e.event_id} {cause}: {attrs.failure.message[:500]}")
    return found


class Warnings(logging.Handler):
    """Worker-side warnings and errors (failed activations, handler glue errors) for the report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("temporalio.workflow") and record.levelno < logging.ERROR:
            return  # the tickets' own refusal warnings: thousands, expected
        self.seen[f"{record.name} {record.levelname}: {record.getMessage()[:300]}"] += 1


# ---------------------------------------------------------------------- 1. fuzz
FUZZ_OPS = 2_000
FUZZ_CONCURRENCY = 20
FUZZ_SECONDS = 75.0


async def test_fuzzed_signals_and_updates_never_fail_a_ticket(
    dev_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    rng = random.Random(1_234_567)
    doc = short_sla_policy(
        reopen_window="PT10M",
        targets={
            "low": ("PT20S", "PT60S"),
            "normal": ("PT6S", "PT20S"),
            "high": ("PT4S", "PT12S"),
            "urgent": ("PT2S", "PT8S"),
        },
        self_service_wait="PT15S",
    )
    warnings = Warnings()
    logging.getLogger().addHandler(warnings)
    began = time.monotonic()
    try:
        async with make_harness(dev_env, receiver, doc) as h:
            client: Client = h.client
            tag = uuid.uuid4().hex[:6]
            vip = {"id": "c-vip", "email": "vip@example.com", "segment": "vip"}
            tickets = [ticket(ticket_id=f"FZ-{tag}-n{i}", priority=PRIORITIES[i]) for i in range(4)]
            tickets += [ticket(ticket_id=f"FZ-{tag}-t0-{i}", category="how-to", channel="web") for i in range(3)]
            tickets += [ticket(ticket_id=f"FZ-{tag}-vip{i}", category="billing", customer=vip) for i in range(3)]
            for t in tickets:
                await h.tickets.open(t)
            for t in tickets:
                await h.tickets.status(t.ticket_id)  # opened: the policy is loaded
            workflow_ids = [workflow_id_for(t.ticket_id) for t in tickets]

            ops = fuzz_plan(rng, workflow_ids, FUZZ_OPS)
            tally = Tally()
            sem = asyncio.Semaphore(FUZZ_CONCURRENCY)
            stop_at = time.monotonic() + FUZZ_SECONDS

            async def one(op: Op) -> None:
                async with sem:
                    if time.monotonic() > stop_at:
                        tally.add("not sent (time bound)")
                        return
                    tally.add(f"sent {op.via}")
                    tally.add(f"sent {op.via} kind={op.kind}")
                    try:
                        await asyncio.wait_for(send(client, op, tally), timeout=20)
                    except TimeoutError:
                        tally.add(f"{op.via} no answer in 20 s", f"{op.via} {op.name[:40]!r} {op.kind}")

            fuzz_began = time.monotonic()
            await asyncio.gather(*(one(op) for op in ops))
            fuzz_seconds = time.monotonic() - fuzz_began

            # Afterwards, each ticket: alive, answering, no internal error, and it takes a valid action.
            problems: list[str] = []
            finals: dict[str, TicketStatus] = {}
            for t, wid in zip(tickets, workflow_ids, strict=True):
                handle = client.get_workflow_handle(wid)
                described = await handle.describe()
                if described.status not in OK_STATUSES:
                    problems.append(f"{wid}: status {described.status}")
                    continue
                status = await h.tickets.status(t.ticket_id)
                timeline = await h.tickets.timeline(t.ticket_id)
                if status.internal_errors:
                    problems.append(f"{wid}: internal_errors={status.internal_errors}")
                errors = [e for e in timeline.events if e.kind == "internal_error"]
                if errors:
                    problems.append(f"{wid}: internal_error events {[e.detail for e in errors][:3]}")
                if described.status == WorkflowExecutionStatus.RUNNING:
                    try:
                        if status.state == State.resolved:
                            after = await h.tickets.act(t.ticket_id, "reopen", {"actor": LEAD, "reason": "fuzz check"})
                            ok = after.state != State.resolved
                        else:
                            priority = next(p for p in PRIORITIES if p != status.priority.value)
                            after = await h.tickets.act(
                                t.ticket_id,
                                "change_priority",
                                {"actor": LEAD, "priority": priority, "reason": "fuzz check"},
                            )
                            ok = after.priority.value == priority
                        if not ok or after.internal_errors:
                            problems.append(f"{wid}: valid action not applied: {after}")
                        finals[wid] = after
                    except (ActionRefused, WorkflowUpdateFailedError, RPCError) as err:
                        problems.append(f"{wid}: valid action refused in state {status.state}: {err!r}")

            # History of every run: no workflow task ever failed.
            events_seen: Counter[str] = Counter()
            runs_total = 0
            raced: Counter[str] = Counter()
            for wid in workflow_ids:
                for rid in await run_ids(client, wid):
                    runs_total += 1
                    events = [e async for e in client.get_workflow_handle(wid, run_id=rid).fetch_history_events()]
                    events_seen.update(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in events)
                    problems += [f"{wid} run {rid}: {f}" for f in task_failures(events, raced=raced)]
            # Tidy the shared dev server: no ticket of this test keeps timers running after it.
            await asyncio.gather(
                *(client.get_workflow_handle(w).terminate(reason="test over") for w in workflow_ids),
                return_exceptions=True,
            )
    finally:
        logging.getLogger().removeHandler(warnings)

    c = tally.counts
    print(
        f"\nfuzz: {len(tickets)} tickets, {FUZZ_OPS} planned in {fuzz_seconds:.1f}s "
        f"(test {time.monotonic() - began:.1f}s); sent {c['sent signal']} signals, {c['sent update']} updates; "
        f"updates accepted {c['update accepted']}, refused {c['update refused']}; runs {runs_total}"
    )
    for key, count in sorted(c.items()):
        print(f"  {count:6d}  {key}" + (f"   e.g. {tally.samples[key]}" if key in tally.samples else ""))
    print("  final states:", Counter(f"{s.state.value}/tier{s.tier}" for s in finals.values()))
    print("  history events:", dict(events_seen.most_common()))
    print(f"  workflow tasks refused for racing new events (retried by the SDK): {dict(raced)}")
    for message, count in warnings.seen.most_common(15):
        print(f"  log x{count}: {message}")

    assert c["sent signal"] + c["sent update"] >= 1_000, "too few operations sent within the time bound"
    assert c["update accepted"] > 0 and c["update refused"] > 0
    assert not [k for k in c if k.startswith("update refused field=!") or "internal" in k], tally.samples
    assert not [k for k in c if "WITH internal_errors" in k], tally.samples
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------- 2. replay
REPLAY_TICKETS = 100  # 200 until 1.0, 140 until the helpdesks: the same mix of histories, less time and CPU
UNCACHED_TICKETS = 8  # measured: ~10 workflow tasks/s without a cache on 2 cores, ~6x fewer than cached
OPEN_BURST = 56  # tickets opened at once at the start
OPEN_SECONDS = 10.0  # the others open one after the other over this time; each is driven once open
DRIVE_SECONDS = 26.0  # after the last opening, no new action
SETTLE_UNTIL = 42.0  # seconds after the first opening: ladders keep firing on untouched ones


def random_ticket(rng: random.Random, tag: str, i: int) -> Ticket:
    category = rng.choice(("account", "billing", "technical", "how-to", "how-to", "general"))
    channel = rng.choice(("email", "web", "chat", "phone", "social_public"))
    segment = "vip" if rng.random() < 0.2 else "standard"
    return ticket(
        ticket_id=f"RP-{tag}-{i}",
        category=category,
        channel=channel,
        priority=rng.choice(PRIORITIES),
        customer={"id": f"c-{i}", "email": f"c{i}@example.com", "segment": segment},
    )


def next_action(rng: random.Random, s: TicketStatus) -> tuple[str, dict[str, Any]] | None:
    """A valid action for the ticket as last seen (its guards may still refuse it)."""
    lead = {"id": "lee.lead", "role": "lead", "tier": 2}
    agent = {"id": rng.choice(("ann", "bob")), "role": "agent", "tier": 1}
    other_priority = rng.choice([p for p in PRIORITIES if p != s.priority.value])
    pending = [a for a in s.pending_approvals]
    if pending and rng.random() < 0.7:
        return "decide_approval", {
            "actor": {"id": "dana.head", "role": "manager"},
            "approval_id": pending[0].id,
            "approved": rng.random() < 0.5,
        }
    escalate = (
        "escalate",
        {"actor": lead, "kind": "hierarchical", "reason": "needs a specialist"}
        if rng.random() < 0.7
        else {
            "actor": lead,
            "kind": "functional",
            "department": rng.choice([d for d in ("support", "billing", "technical") if d != s.department]),
            "reason": "wrong team",
        },
    )
    change_priority = ("change_priority", {"actor": lead, "priority": other_priority, "reason": "customer impact"})
    resolve = ("resolve", {"actor": agent, "resolution": "fixed"})
    choices: list[tuple[str, dict[str, Any]]]
    if s.state == State.self_service:
        choices = [
            ("confirm_solved", {"note": "the article helped"}),
            ("customer_replied", {"note": "still broken"}),
            ("acknowledge", {"actor": agent}),
            escalate,
            change_priority,
        ]
    elif s.state == State.open:
        choices = [
            ("acknowledge", {"actor": agent}),
            ("acknowledge", {"actor": agent}),
            ("pending_customer", {"actor": agent, "note": "need logs"}),
            escalate,
            ("reassign", {"actor": lead, "to_agent": "bob", "reason": "load balancing"}),
            change_priority,
            ("request_approval", {"actor": agent, "kind": "refund", "amount": rng.choice((20, 300)), "reason": "late"}),
            resolve,
        ]
    elif s.state == State.acknowledged:
        choices = [
            ("pending_customer", {"actor": agent, "note": "need logs"}),
            ("pending_customer", {"actor": agent}),
            resolve,
            resolve,
            escalate,
            change_priority,
            ("request_approval", {"actor": agent, "kind": "discount", "amount": 30, "reason": "goodwill"}),
        ]
    elif s.state == State.pending_customer:
        choices = [("customer_replied", {"note": "here are the logs"}), ("customer_replied", {}), resolve, escalate]
    else:
        if rng.random() < 0.5:
            return None
        choices = [("reopen", {"actor": lead, "reason": "came back"})]
    return rng.choice(choices)


def event_outline(history: WorkflowHistory, limit: int = 60) -> str:
    """`id:TYPE` of a history's first events (with the names of timers, activities and markers)."""
    parts = []
    for e in list(history.events)[:limit]:
        kind = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
        attrs = e.WhichOneof("attributes")
        detail = ""
        if attrs == "activity_task_scheduled_event_attributes":
            detail = f"({e.activity_task_scheduled_event_attributes.activity_type.name})"
        elif attrs == "marker_recorded_event_attributes":
            detail = f"({e.marker_recorded_event_attributes.marker_name})"
        parts.append(f"{e.event_id}:{kind}{detail}")
    return " ".join(parts)


def save_histories(folder: Path, histories: list[WorkflowHistory]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for h in histories:  # named by workflow id, as `escalations replay --history` expects; a folder per run
        run = folder / h.run_id
        run.mkdir(exist_ok=True)
        (run / f"{h.workflow_id}.json").write_text(h.to_json())
    return folder


async def all_histories(client: Client, workflow_ids: list[str]) -> list[WorkflowHistory]:
    """The history of every run of each workflow (latest first fetched, then back along continue-as-new)."""
    sem = asyncio.Semaphore(20)

    async def of(wid: str) -> list[WorkflowHistory]:
        async with sem:
            runs = [await client.get_workflow_handle(wid).fetch_history()]
            while previous := runs[-1].events[0].workflow_execution_started_event_attributes.continued_execution_run_id:
                runs.append(await client.get_workflow_handle(wid, run_id=previous).fetch_history())
            return runs[::-1]

    nested = await asyncio.gather(*(of(wid) for wid in workflow_ids))
    return [h for runs in nested for h in runs]


async def test_random_valid_histories_replay_on_current_code(
    dev_env: WorkflowEnvironment,
    receiver: Receiver,
    write_policy: Callable[[dict[str, Any]], Path],
    tmp_path: Path,
) -> None:
    rng = random.Random(42_4242)
    doc = short_sla_policy(
        reopen_window="PT15S",
        # Urgent tickets climb tiers during the run, high ones once; normal and low ones only warn
        # and breach their first response: enough variety, and a worker that keeps up.
        targets={
            "low": ("PT30S", "PT2M"),
            "normal": ("PT15S", "PT60S"),
            "high": ("PT8S", "PT25S"),
            "urgent": ("PT5S", "PT12S"),
        },
        self_service_wait="PT15S",
    )
    settings = make_settings(write_policy(doc), receiver)
    client = dev_env.client
    cached_queue = f"tq-replay-{uuid.uuid4().hex[:8]}"
    uncached_queue = f"tq-replay-nocache-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    plan = [random_ticket(rng, tag, i) for i in range(REPLAY_TICKETS)]
    # Without a cache every workflow task replays the whole history: the slowest SLAs keep the
    # uncached tickets' tasks (and this test) within the time bound.
    plan[:UNCACHED_TICKETS] = [t.model_copy(update={"priority": Priority.low}) for t in plan[:UNCACHED_TICKETS]]
    workflow_ids = [workflow_id_for(t.ticket_id) for t in plan]
    # The first tickets run on a worker without a workflow cache (every task replays the history
    # from scratch); the rest on the product's worker (`build_worker`).
    client_for = {
        t.ticket_id: TicketClient(client, uncached_queue if i < UNCACHED_TICKETS else cached_queue)
        for i, t in enumerate(plan)
    }
    tally: Counter[str] = Counter()
    began = time.monotonic()

    async with httpx.AsyncClient(timeout=5) as http:
        activities = TicketActivities(settings, http)
        activities.prime()
        # As `workers.worker.build_worker`, plus max_cached_workflows=0.
        uncached = Worker(
            client,
            task_queue=uncached_queue,
            workflows=[TicketEscalation],
            activities=activities.all(),  # type: ignore[arg-type]
            workflow_failure_exception_types=[pydantic.ValidationError],
            max_concurrent_activities=100,
            workflow_runner=SandboxedWorkflowRunner(),
            max_cached_workflows=0,
        )
        cached = build_worker(client, settings, http, task_queue=cached_queue)
        async with uncached, cached:
            acting = asyncio.Semaphore(20)

            drive_until = began + OPEN_SECONDS + DRIVE_SECONDS

            async def step(
                tickets: TicketClient, t: Ticket, local: random.Random, status: TicketStatus | None
            ) -> TicketStatus | None:
                """One action; returns the ticket's status if the answer carried it."""
                if status is None:
                    status = await tickets.status(t.ticket_id)
                chosen = next_action(local, status)
                if chosen is None:
                    raise StopAsyncIteration
                name, payload = chosen
                try:
                    if local.random() < 0.2:
                        await tickets.signal(t.ticket_id, name, payload)
                        tally[f"signal {name}"] += 1
                        return None
                    answer = await tickets.act(t.ticket_id, name, payload)
                    tally[f"accepted {name}"] += 1
                    return answer
                except ActionRefused as err:
                    tally[f"refused {name}: {err.field}"] += 1
                    return None

            async def drive(i: int, t: Ticket) -> None:
                """Open the ticket (the openings spread over OPEN_SECONDS), then act on it a few times."""
                tickets = client_for[t.ticket_id]
                local = random.Random(i * 7919 + 1)
                # A burst first (a busy worker: slow first workflow tasks, queries waiting on them),
                # then a steady stream.
                later = max(0, i - OPEN_BURST) / (len(plan) - OPEN_BURST)
                await asyncio.sleep(OPEN_SECONDS * later)
                await tickets.open(t)
                steps = 0 if local.random() < 0.25 else local.randint(1, 5)
                status: TicketStatus | None = None
                for _ in range(steps):
                    await asyncio.sleep(local.uniform(0.3, 3.0))
                    async with acting:
                        left = drive_until - time.monotonic()
                        if left <= 0:
                            tally["drive: out of time"] += 1
                            return
                        try:
                            status = await asyncio.wait_for(step(tickets, t, local, status), timeout=min(left, 10))
                        except StopAsyncIteration:
                            return
                        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
                            # A busy worker: try again at the next step.
                            tally[f"drive: no answer in time ({'query' if status is None else 'action'})"] += 1
                            status = None
                        except (WorkflowUpdateFailedError, RPCError) as err:  # e.g. a failed workflow task
                            tally[f"error: {type(err).__name__} {err}"[:160]] += 1
                            return

            await asyncio.gather(*(drive(i, t) for i, t in enumerate(plan)))
            driven = time.monotonic()
            await asyncio.sleep(max(0.0, began + SETTLE_UNTIL - time.monotonic()))

            described = await asyncio.gather(*(client.get_workflow_handle(w).describe() for w in workflow_ids))
            histories = await all_histories(client, workflow_ids)
            fetched = time.monotonic()
            # Tidy the shared dev server: no ticket of this test keeps timers running after it.
            await asyncio.gather(
                *(client.get_workflow_handle(w).terminate(reason="test over") for w in workflow_ids),
                return_exceptions=True,
            )

    async def feed() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    replayer = Replayer(workflows=[TicketEscalation], data_converter=TEST_CONVERTER)
    results = await replayer.replay_workflows(feed(), raise_on_replay_failure=False)
    replayed = time.monotonic()

    ends: Counter[str] = Counter()
    for d in described:
        attrs = d.typed_search_attributes
        ends[f"status {d.status.name if d.status else None}"] += 1
        ends[f"state {attrs.get(sa.TICKET_STATE)}"] += 1
        ends[f"tier {attrs.get(sa.TICKET_TIER)}"] += 1
        if (attrs.get(sa.ESCALATION_COUNT) or 0) > 0:
            ends["escalated at least once"] += 1
        if attrs.get(sa.SLA_BREACHED):
            ends["breached"] += 1
    uncached_ids = set(workflow_ids[:UNCACHED_TICKETS])
    raced: Counter[str] = Counter()
    problems: list[str] = []
    for h in histories:
        where = f"{h.workflow_id} ({'uncached' if h.workflow_id in uncached_ids else 'cached'} worker) run {h.run_id}"
        problems += [f"{where}: {f}" for f in task_failures(list(h.events), raced=raced)]
        if h.run_id in results.replay_failures:
            problems.append(f"{where}: replay failed: {results.replay_failures[h.run_id]}")
    problems += [f"{d.id}: status {d.status}" for d in described if d.status not in OK_STATUSES]
    events = sum(len(h.events) for h in histories)
    print(
        f"\nreplay: {REPLAY_TICKETS} tickets ({UNCACHED_TICKETS} on a worker without cache), "
        f"{len(histories)} histories, {events} events; driven in {driven - began:.1f}s, "
        f"fetched at {fetched - began:.1f}s, replayed in {replayed - fetched:.1f}s; total {replayed - began:.1f}s; "
        f"replay failures {len(results.replay_failures)}"
    )
    for key, count in sorted((tally + ends + raced).items()):
        print(f"  {count:5d}  {key}")
    if results.replay_failures:  # kept for `escalations replay --history FILE`
        # Also outside pytest's rotating temporary folders (FUZZ_FAILURES_DIR), and the first one's
        # events in the failure message, so that a failure in CI can be read after the run.
        failing = [h for h in histories if h.run_id in results.replay_failures]
        saved = save_histories(Path(os.environ.get("FUZZ_FAILURES_DIR") or tmp_path) / "replay-failures", failing)
        print(f"  histories that do not replay: {saved}")
        problems.append("first failing history: " + event_outline(failing[0]))

    assert not problems, "\n".join(problems)
    # The workload itself (how many were escalated, resolved, paused) depends on how busy the machine
    # is; it is printed above. Only a run that did nothing at all is refused.
    acted = sum(v for k, v in tally.items() if k.startswith(("accepted ", "signal ")))
    assert acted > 0 and ends["breached"] > 0, "no action was taken or no ladder fired: the worker never kept up"
