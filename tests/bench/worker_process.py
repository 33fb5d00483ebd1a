"""A worker in its own process, so the benchmark can read its memory alone (`/proc/PID/status`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import httpx
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from config.settings import Settings
from tests.bench.bare import BareTicket, bare_notify
from workers.logs import configure
from workers.telemetry import metrics_runtime
from workers.worker import build_worker


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--kind", choices=["ticket", "bare"], required=True)
    parser.add_argument("--policy")
    parser.add_argument("--sandbox", choices=["on", "off"], default="on")
    parser.add_argument("--metrics", choices=["on", "off"], default="on")
    args = parser.parse_args()
    configure("console", "WARNING")
    runtime = metrics_runtime("127.0.0.1:0") if args.metrics == "on" else None
    client = await Client.connect(args.address, data_converter=pydantic_data_converter, runtime=runtime)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with httpx.AsyncClient() as http:
        if args.kind == "ticket":
            settings = Settings(
                _env_file=None,
                policy_path=Path(args.policy),
                workflow_sandbox=args.sandbox == "on",
                webhook_secret=SecretStr("whsec_YmVuY2gtc2VjcmV0LWZvci10aGUtYmVuY2htYXJrLTE="),
            )
            worker = build_worker(client, settings, http, task_queue=args.task_queue)
        else:
            worker = Worker(client, task_queue=args.task_queue, workflows=[BareTicket], activities=[bare_notify])
        async with worker:
            print("ready", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
