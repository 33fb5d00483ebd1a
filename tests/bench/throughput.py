"""Benchmark: tickets per second and breach-notification lateness, against a bare workflow.

    ./dev bench [--tickets 1000]

On one in-memory dev server, in one run: N tickets through open -> acknowledge -> resolve, N tickets
through a first-response breach (SLA of a few seconds, the webhook delivered to a receiver on
127.0.0.1), and the same counts through `BareTicket`. Prints tickets/s, the ratio to the bare
workflow, lateness p50/p99 (arrival at the receiver minus the deadline) and worker memory per open
ticket. Figures, not assertions: see docs/benchmarks.md.

After them, counts per lifecycle read from histories (tests/bench/histories.py). With `--hold N
--cache M` only the hold runs instead: N open tickets breaching on one worker (tests/bench/hold.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.client import TicketClient
from tests.bench import histories, hold
from tests.bench.bare import BareTicket, bare_notify
from tests.bench.common import AGENT, free_port, percentile, rss_of, run_all, start_worker_process, ticket
from tests.conftest import make_settings, policy_doc
from tests.receiver import start_receiver
from workers.connection import binary
from workers.logs import configure
from workers.telemetry import metrics_runtime
from workers.worker import build_worker
from workflows import search_attributes as sa

NO_METRICS = False
SLA_SECONDS = 6
BURST_SECONDS = 90


def bench_policy() -> dict[str, Any]:
    doc = policy_doc(reopen_window="PT0S")
    for tier in doc["sla"].values():
        for targets in tier.values():
            targets.update(first_response=f"PT{SLA_SECONDS}S", resolution="PT1H")
        # The burst phase: urgent tickets all opened at one instant, so their breaches coincide.
        tier["urgent"].update(first_response=f"PT{BURST_SECONDS}S")
    doc["ladders"] = {
        "first_response": [
            {"id": "fr-breach", "after_breach": "PT0S", "actions": [{"type": "notify", "roles": ["assignee"]}]}
        ],
        "resolution": [],
    }
    return doc


async def lifecycle_tickets(client: Client, tq: str, n: int, concurrency: int, ids: list[str] | None = None) -> float:
    tickets, run = TicketClient(client, tq), uuid.uuid4().hex[:6]

    async def one(i: int) -> None:
        tid = f"B{run}-{i}"
        await tickets.open(ticket(tid))
        if ids is not None:
            ids.append(tickets.handle(tid).id)
        await tickets.act(tid, "acknowledge", AGENT)
        await tickets.act(tid, "resolve", AGENT | {"resolution": "done"})
        await tickets.handle(tid).result()

    return n / await run_all(n, concurrency, one)


async def lifecycle_bare(
    client: Client, tq: str, n: int, concurrency: int, url: str, ids: list[str] | None = None
) -> float:
    run = uuid.uuid4().hex[:6]

    async def one(i: int) -> None:
        far = datetime.now(UTC) + timedelta(hours=1)
        handle = await client.start_workflow(
            BareTicket.run, args=[f"b{i}", far, url], id=f"bare-{run}-{i}", task_queue=tq
        )
        await handle.execute_update(BareTicket.acknowledge)
        await handle.execute_update(BareTicket.resolve)
        await handle.result()
        if ids is not None:
            ids.append(handle.id)

    return n / await run_all(n, concurrency, one)


async def breaches(
    client: Client, tq: str, n: int, rate: float, bare: bool, url: str, arrivals: dict[str, float]
) -> list[float]:
    """Start n tickets at `rate` per second whose first response breaches; lateness (s) per delivery.

    Paced, so that the figure measures deadline -> webhook, not a backlog of starts.
    """
    run = uuid.uuid4().hex[:6]
    tickets = TicketClient(client, tq)
    deadlines: dict[str, float] = {}

    async def one(i: int) -> None:
        tid = f"{'x' if bare else 'T'}{run}-{i}"
        opened = datetime.now(UTC)
        deadlines[tid] = (opened + timedelta(seconds=SLA_SECONDS)).timestamp()
        if bare:
            await client.start_workflow(
                BareTicket.run,
                args=[tid, opened + timedelta(seconds=SLA_SECONDS), url],
                id=f"bare-{tid}",
                task_queue=tq,
            )
        else:
            await tickets.open(ticket(tid, opened))

    began = time.perf_counter()

    async def paced(i: int) -> None:
        await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
        await one(i)

    await asyncio.gather(*(paced(i) for i in range(n)))
    for _ in range(600):
        if sum(1 for tid in deadlines if tid in arrivals) >= n:
            break
        await asyncio.sleep(0.1)
    return [arrivals[tid] - deadlines[tid] for tid in deadlines if tid in arrivals]


async def burst(
    client: Client, tq: str, n: int, concurrency: int, bare: bool, url: str, arrivals: dict[str, float]
) -> list[float]:
    """n tickets opened at one instant: their first-response deadlines all fall together (as
    business-hours calendars make them fall at opening time); lateness (s) of each breach webhook."""
    run = uuid.uuid4().hex[:6]
    tickets = TicketClient(client, tq)
    opened = datetime.now(UTC)
    deadline = opened + timedelta(seconds=BURST_SECONDS)
    ids = [f"{'y' if bare else 'U'}{run}-{i}" for i in range(n)]

    async def one(i: int) -> None:
        if bare:
            await client.start_workflow(
                BareTicket.run, args=[ids[i], deadline, url], id=f"bare-{ids[i]}", task_queue=tq
            )
        else:
            await tickets.open(ticket(ids[i], opened, priority="urgent"))

    spent = await run_all(n, concurrency, one)
    if spent > BURST_SECONDS:
        print(f"  (starting {n} took {spent:.0f}s, longer than the {BURST_SECONDS}s SLA: the burst is spread)")
    await asyncio.sleep(max(0.0, deadline.timestamp() - time.time()))
    for _ in range(1200):
        if sum(1 for tid in ids if tid in arrivals) >= n:
            break
        await asyncio.sleep(0.1)
    return [arrivals[tid] - deadline.timestamp() for tid in ids if tid in arrivals]


async def memory_per_open_workflow(
    env: WorkflowEnvironment, kind: str, n: int, concurrency: int, policy: Path, sandbox: str, url: str
) -> float:
    """KiB of worker RSS per open workflow, read from a worker running alone in a child process."""
    tq = f"mem-{kind}-{uuid.uuid4().hex[:6]}"
    options = ["--policy", str(policy), "--sandbox", sandbox, "--metrics", "off" if NO_METRICS else "on"]
    child = await start_worker_process(env.client.service_client.config.target_host, tq, kind, *options)
    far = datetime.now(UTC) + timedelta(hours=1)
    tickets = TicketClient(env.client, tq)

    async def start(i: int, prefix: str) -> None:
        if kind == "bare":
            handle = await env.client.start_workflow(
                BareTicket.run, args=[f"m{i}", far, url], id=f"{tq}-{prefix}{i}", task_queue=tq
            )
            await handle.execute_update(BareTicket.acknowledge)  # proves the workflow is loaded and cached
        else:
            tid = f"{tq}-{prefix}{i}"
            await tickets.open(ticket(tid))
            await tickets.act(tid, "acknowledge", AGENT)

    await run_all(50, concurrency, lambda i: start(i, "w"))  # warm-up: imports, caches, pools
    await asyncio.sleep(1)
    before = rss_of(child.pid)
    await run_all(n, concurrency, lambda i: start(i, "m"))
    await asyncio.sleep(1)
    after = rss_of(child.pid)
    child.terminate()
    await child.wait()
    return (after - before) / n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--breach-rate", type=float, default=20, help="tickets started per second, breach phase")
    parser.add_argument("--burst", type=int, default=500, help="tickets whose breaches fall at one instant")
    parser.add_argument(
        "--no-metrics", action="store_true", help="workers without the Prometheus endpoint (production has it)"
    )
    parser.add_argument(
        "--store-url", default=None, help="record store of the tickets (default: a SQLite file in a temporary folder)"
    )
    parser.add_argument("--store-rounds", type=int, default=3, help="alternating store on/off lifecycle measurements")
    parser.add_argument("--sample", type=int, default=20, help="lifecycles per kind whose histories are counted")
    parser.add_argument("--event-types", action="store_true", help="also print every event type's count per lifecycle")
    parser.add_argument("--review", type=int, default=0, help="only the review: N stored lives, review timed")
    parser.add_argument("--review-db", choices=["sqlite", "postgresql"], default="sqlite", help="review: the store")
    parser.add_argument("--connector", type=int, default=0, help="only the connector: N tickets, webhook vs Zendesk")
    parser.add_argument("--hold", type=int, default=0, help="only the hold: N open tickets breaching on one worker")
    parser.add_argument("--cache", type=int, default=1000, help="hold: the worker's max_cached_workflows")
    parser.add_argument("--hold-rate", type=float, default=25, help="hold: tickets opened per second at most")
    parser.add_argument("--hold-sla", type=int, default=None, help="hold: first response due (s); default from rate")
    parser.add_argument("--hold-timeout", type=float, default=300, help="hold: wait after the last deadline (s)")
    parser.add_argument("--hold-sandbox", choices=["on", "off"], default="on", help="hold: the workflow sandbox")
    args = parser.parse_args()
    if args.review:
        from tests.bench.review_scale import bench as review_bench

        await review_bench(args.review, args.review_db)
        return
    if args.connector:
        from tests.bench.connector import bench as connector_bench

        await connector_bench(args.connector, args.concurrency, args.breach_rate, 3, bench_policy())
        return
    global NO_METRICS
    NO_METRICS = args.no_metrics
    n, conc = args.tickets, args.concurrency
    configure("console", "WARNING")  # per-delivery info lines would dominate the run

    receiver = start_receiver()
    arrivals: dict[str, float] = {}
    breached: dict[str, float] = {}  # sla.breached webhooks only (the hold)
    original = receiver.answer

    def stamp(req: Any) -> int:
        if req.path in ("/events", "/bare"):
            arrivals.setdefault(req.json()["ticket_id"], time.time())
            if req.json().get("type") == "sla.breached":
                breached.setdefault(req.json()["ticket_id"], time.time())
        return original(req)

    receiver.answer = stamp  # type: ignore[method-assign]
    policy = Path(tempfile.mkdtemp()) / "bench-policy.yaml"
    hold_sla = args.hold_sla or hold.default_sla(args.hold, args.hold_rate)
    policy.write_text(yaml.safe_dump(hold.hold_policy(bench_policy(), hold_sla) if args.hold else bench_policy()))
    # As in production: the workers' runtime serves Prometheus, so every metric call is real.
    runtime = None if args.no_metrics else metrics_runtime(f"127.0.0.1:{free_port()}")
    store_url = args.store_url or f"sqlite:///{policy.parent / 'store.db'}"
    env = await WorkflowEnvironment.start_local(
        runtime=runtime,
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(binary("temporal")),
        search_attributes=sa.ALL,
        dev_server_log_level="error",
    )
    try:
        if args.hold:
            options = ["--policy", str(policy), "--store-url", store_url, "--metrics", "off" if NO_METRICS else "on"]
            options += ["--webhook-url", f"{receiver.url}/events", "--helpdesk-url", receiver.url]
            options += ["--sandbox", args.hold_sandbox]
            await hold.hold(
                env.client, options, breached, args.hold, args.cache, conc, args.hold_rate, hold_sla, args.hold_timeout
            )
            return
        print(f"{n} tickets per measurement, concurrency {conc}, one in-memory dev server, {os.cpu_count()} cores")
        bare_ids: list[str] = []
        ticket_ids: list[str] = []
        async with httpx.AsyncClient() as http:
            tq = f"bench-{uuid.uuid4().hex[:6]}"
            sandboxed = build_worker(env.client, make_settings(policy, receiver, store_url), http, task_queue=tq)
            unsandboxed = build_worker(
                env.client,
                make_settings(policy, receiver, store_url).model_copy(update={"workflow_sandbox": False}),
                http,
                task_queue=tq + "-nosandbox",
            )
            # The same ticket worker with the record store off (tickets it opens write nothing).
            no_store = build_worker(
                env.client,
                make_settings(policy, receiver, store_url).model_copy(update={"store_events": False}),
                http,
                task_queue=tq + "-nostore",
            )
            bare_worker = Worker(
                env.client,
                task_queue=tq + "-bare",
                workflows=[BareTicket],
                activities=[bare_notify],
                max_concurrent_activities=100,
            )
            async with sandboxed, unsandboxed, bare_worker, no_store:
                await lifecycle_bare(env.client, tq + "-bare", min(n, 50), conc, receiver.url)  # warm-up
                await lifecycle_tickets(env.client, tq, min(n, 50), conc)
                await lifecycle_tickets(env.client, tq + "-nosandbox", min(n, 50), conc)
                bare_rate = await lifecycle_bare(env.client, tq + "-bare", n, conc, receiver.url, bare_ids)
                ticket_rate = await lifecycle_tickets(env.client, tq, n, conc, ticket_ids)
                fast_rate = await lifecycle_tickets(env.client, tq + "-nosandbox", n, conc)
                print("open -> acknowledge -> resolve (tickets/s):")
                print(
                    f"  bare workflow {bare_rate:.1f}; tickets {ticket_rate:.1f} (ratio {ticket_rate / bare_rate:.2f})"
                )
                print(f"  tickets without sandbox {fast_rate:.1f} (ratio {fast_rate / bare_rate:.2f})")
                if args.store_rounds:
                    await lifecycle_tickets(env.client, tq + "-nostore", min(n, 50), conc)  # warm-up
                    on: list[float] = []
                    off: list[float] = []
                    for _ in range(args.store_rounds):  # alternated: the machine's load drifts
                        off.append(await lifecycle_tickets(env.client, tq + "-nostore", n, conc))
                        on.append(await lifecycle_tickets(env.client, tq, n, conc))
                    on_rate, off_rate = statistics.median(on), statistics.median(off)
                    print(
                        f"record store ({store_url.split(':')[0]}), open -> acknowledge -> resolve, "
                        f"median of {args.store_rounds} alternating rounds (tickets/s):"
                    )
                    print(
                        f"  store on {on_rate:.1f} ({', '.join(f'{r:.1f}' for r in on)}); "
                        f"store off {off_rate:.1f} ({', '.join(f'{r:.1f}' for r in off)}); "
                        f"loss {100 * (1 - on_rate / off_rate):.1f} %"
                    )
                rate = args.breach_rate
                bare_late = await breaches(env.client, tq + "-bare", n, rate, True, f"{receiver.url}/bare", arrivals)
                late = await breaches(env.client, tq, n, rate, False, receiver.url, arrivals)
                fast_late = await breaches(env.client, tq + "-nosandbox", n, rate, False, receiver.url, arrivals)
                print(
                    f"first-response breach ({SLA_SECONDS}s SLA, {rate:g} tickets started/s) -> webhook received, "
                    "lateness after the deadline (p50 / p99):"
                )
                base50, base99 = statistics.median(bare_late), percentile(bare_late, 0.99)
                for name, values in (
                    ("bare workflow", bare_late),
                    ("tickets", late),
                    ("tickets without sandbox", fast_late),
                ):
                    p50, p99 = statistics.median(values), percentile(values, 0.99)
                    ratio = "" if values is bare_late else f" (ratio {p50 / base50:.2f} / {p99 / base99:.2f})"
                    print(f"  {name}: {p50:.2f}s / {p99:.2f}s, {len(values)}/{n} delivered{ratio}")
                if args.burst:
                    m = args.burst
                    bare_b = await burst(env.client, tq + "-bare", m, conc, True, f"{receiver.url}/bare", arrivals)
                    tick_b = await burst(env.client, tq, m, conc, False, receiver.url, arrivals)
                    print(f"burst: {m} first-response deadlines at one instant -> webhook lateness (p50 / p99):")
                    b50, b99 = statistics.median(bare_b), percentile(bare_b, 0.99)
                    t50, t99 = statistics.median(tick_b), percentile(tick_b, 0.99)
                    print(f"  bare workflow: {b50:.2f}s / {b99:.2f}s, {len(bare_b)}/{m} delivered")
                    print(
                        f"  tickets: {t50:.2f}s / {t99:.2f}s, {len(tick_b)}/{m} delivered "
                        f"(ratio {t50 / b50:.2f} / {t99 / b99:.2f})"
                    )
        mem_bare = await memory_per_open_workflow(env, "bare", n, conc, policy, "on", f"{receiver.url}/bare")
        mem_ticket = await memory_per_open_workflow(env, "ticket", n, conc, policy, "on", receiver.url)
        mem_fast = await memory_per_open_workflow(env, "ticket", n, conc, policy, "off", receiver.url)
        print(f"worker memory per open workflow (RSS growth of a worker process holding {n} open, cached):")
        print(f"  bare {mem_bare:.1f} KiB; ticket {mem_ticket:.1f} KiB; ticket without sandbox {mem_fast:.1f} KiB")
        # Last, so that fetching histories disturbs no timing: what one lifecycle costs the server.
        rows = {
            "bare": await histories.count(env.client, bare_ids, args.sample),
            "ticket": await histories.count(env.client, ticket_ids, args.sample),
        }
        print("per lifecycle, open -> acknowledge -> resolve (mean over completed workflows; ticket: sandbox on):")
        print("\n".join(histories.table(rows)))
        if args.event_types:
            print("\n".join(histories.event_types(rows)))
    finally:
        await env.shutdown()
        receiver.server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
