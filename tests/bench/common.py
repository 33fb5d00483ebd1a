"""Helpers shared by the benchmark's phases: bounded concurrency, percentiles, a worker process."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from workflows.models import Ticket

AGENT = {"actor": {"id": "ann", "role": "agent"}}


async def run_all(n: int, concurrency: int, work: Callable[[int], Awaitable[None]]) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await work(i)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - began


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_of(pid: int) -> int:
    """Resident set size of a process, KiB (0 once it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def start_worker_process(
    address: str, task_queue: str, kind: str, *options: str, stderr: int | None = None
) -> asyncio.subprocess.Process:
    """tests/bench/worker_process.py in a child process, returned once it polls (it prints "ready");
    its stderr (the worker's log) to the file descriptor `stderr`, else to ours."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench.worker_process",
        "--address",
        address,
        "--task-queue",
        task_queue,
        "--kind",
        kind,
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )
    assert child.stdout is not None
    if (await child.stdout.readline()).strip() != b"ready":
        raise RuntimeError(f"the worker process exited ({await child.wait()}) before it was ready")
    return child


def ticket(tid: str, opened_at: datetime | None = None, priority: str = "normal") -> Ticket:
    return Ticket.model_validate(
        {"ticket_id": tid, "subject": "bench", "customer": {"id": "c"}, "opened_at": opened_at, "priority": priority}
    )
