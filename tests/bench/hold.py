"""The hold: many open tickets on one worker with a bounded workflow cache, every one breaching.

    ./dev bench --hold 50000 --cache 2000 [--hold-rate 25] [--hold-sla SECONDS]

One ticket worker in a child process (`max_cached_workflows` = --cache) holds N open tickets, paced
in at --hold-rate starts per second (at most --concurrency at a time). Each ticket's first response
is due a fixed SLA after its opening, long enough that all N are open before the first deadline; so
most breaches fall on tickets evicted from the cache, which the worker rebuilds from their history.
Prints breaches delivered, their lateness and the worker's RSS (sampled every few seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client

from api.client import TicketClient
from tests.bench.common import AGENT, cpu_of, percentile, rss_of, run_all, start_worker_process, ticket

RSS_EVERY = 2.0  # seconds between RSS samples
WARM_UP = 20  # open -> acknowledge -> resolve tickets before the baseline RSS is read


def default_sla(n: int, rate: float) -> int:
    """Seconds from opening to the first-response deadline: the paced starts take n / rate seconds;
    a quarter more and half a minute more, so that the last ticket opens before the first breach."""
    return math.ceil(n / rate * 1.25) + 30


def hold_policy(doc: dict[str, Any], sla: int) -> dict[str, Any]:
    """The bench policy with every tier's first response due `sla` seconds after opening."""
    for tier in doc["sla"].values():
        for targets in tier.values():
            targets.update(first_response=f"PT{sla}S")
    return doc


@dataclass
class Memory:
    """RSS samples (KiB) of the worker process."""

    pid: int
    samples: list[int]

    async def sample(self) -> None:
        while True:
            self.samples.append(rss_of(self.pid))
            await asyncio.sleep(RSS_EVERY)


async def hold(
    client: Client,
    options: list[str],
    breached: dict[str, float],
    n: int,
    cache: int,
    concurrency: int,
    rate: float,
    sla: int,
    grace: float,
) -> None:
    """`options`: worker_process.py flags (policy, webhook and helpdesk URLs, store, metrics); `grace`:
    seconds to wait for breaches after the last deadline."""
    tq, run = f"hold-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    address = client.service_client.config.target_host
    fd, log = tempfile.mkstemp(prefix="hold-worker-", suffix=".log")
    try:
        child = await start_worker_process(
            address, tq, "ticket", "--max-cached-workflows", str(cache), *options, stderr=fd
        )
    finally:
        os.close(fd)  # the child has its own copy
    memory = Memory(child.pid, [])
    sampler = asyncio.create_task(memory.sample())
    tickets = TicketClient(client, tq)
    try:

        async def lifecycle(i: int) -> None:
            tid = f"H{run}-w{i}"
            await tickets.open(ticket(tid))
            await tickets.act(tid, "acknowledge", AGENT)
            await tickets.act(tid, "resolve", AGENT | {"resolution": "done"})

        await run_all(WARM_UP, concurrency, lifecycle)  # imports, pools: not the cache's share
        await asyncio.sleep(RSS_EVERY)
        base, cpu_base = rss_of(child.pid), cpu_of(child.pid)
        print(f"hold: {n} tickets, worker cache {cache} workflows, first response due {sla}s after opening")
        print(f"  worker RSS after a warm-up of {WARM_UP} lifecycles: {base / 1024:.1f} MiB")

        deadlines: dict[str, float] = {}
        began = time.perf_counter()

        async def paced(i: int) -> None:
            await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
            await opening(i)

        gate = asyncio.Semaphore(concurrency)

        async def opening(i: int) -> None:
            tid = f"H{run}-{i}"
            async with gate:
                opened = datetime.now(UTC)
                deadlines[tid] = opened.timestamp() + sla
                await tickets.open(ticket(tid, opened))

        progress = asyncio.create_task(report(deadlines, breached, memory, n, began))
        try:
            await asyncio.gather(*(paced(i) for i in range(n)))
            spent = time.perf_counter() - began
            first = min(deadlines.values())
            print(f"  opened {len(deadlines)} tickets in {spent:.1f}s ({len(deadlines) / spent:.1f}/s)")
            if time.time() > first:
                print(
                    f"  (the first deadline passed {time.time() - first:.0f}s before the last start: raise --hold-sla)"
                )
            after_starts, cpu_starts = rss_of(child.pid), cpu_of(child.pid)
            end = max(deadlines.values()) + grace  # then give up on the missing ones
            while time.time() < end:
                if sum(1 for tid in deadlines if tid in breached) >= n:
                    break
                await asyncio.sleep(0.5)
        finally:
            progress.cancel()
        late = [breached[tid] - deadline for tid, deadline in deadlines.items() if tid in breached]
        print(f"  breaches delivered / expected: {len(late)} / {n}")
        if late:
            p50, p99 = statistics.median(late), percentile(late, 0.99)
            print(f"  lateness after the deadline: p50 {p50:.2f}s, p99 {p99:.2f}s, max {max(late):.2f}s")
        final, peak, cpu_end = rss_of(child.pid), max(memory.samples), cpu_of(child.pid)
        print(
            f"  worker CPU per ticket: {1000 * (cpu_starts - cpu_base) / n:.1f} ms while opening, "
            f"{1000 * (cpu_end - cpu_starts) / n:.1f} ms from then to the last breach"
        )
        held = min(n, cache)
        print(
            f"  worker RSS (every {RSS_EVERY:g}s, {len(memory.samples)} samples): max {peak / 1024:.1f} MiB, "
            f"after the starts {after_starts / 1024:.1f} MiB, final {final / 1024:.1f} MiB"
        )
        # Growth over the warm-up per cached ticket, and per ticket opened: when N > cache, which of
        # the two RSS follows shows whether evicted workflows leave memory behind.
        print(
            f"  RSS growth per cached ticket ((max - warm-up) / {held}): {(peak - base) / held:.1f} KiB "
            f"(final {(final - base) / held:.1f}); per ticket opened: {(peak - base) / n:.1f} KiB"
        )
    finally:
        sampler.cancel()
        child.terminate()
        await child.wait()
        print(f"  worker log: {worker_log(Path(log))}")


async def report(deadlines: dict[str, float], breached: dict[str, float], memory: Memory, n: int, began: float) -> None:
    """A progress line every half minute (a large hold runs for long)."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(30)
            delivered = sum(1 for tid in deadlines if tid in breached)
            print(
                f"  ... {time.perf_counter() - began:.0f}s: {len(deadlines)}/{n} opened, {delivered} breaches, "
                f"RSS {memory.samples[-1] / 1024:.1f} MiB",
                flush=True,
            )


def worker_log(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines()
    slow = sum(1 for line in lines if "TMPRL1104" in line)  # core: a workflow task took over 5 s
    return f"{len(lines)} lines, {slow} of them workflow tasks over 5 s ({path})"
