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
from temporalio.plugin import SimplePlugin
from temporalio.worker import Worker, WorkerConfig

from config.settings import Settings
from tests.bench.bare import BareTicket, bare_notify
from workers.logs import configure
from workers.telemetry import metrics_runtime
from workers.worker import build_worker


class CacheSize(SimplePlugin):
    """Sets the worker's workflow cache (`max_cached_workflows`): a client plugin, so that the ticket
    worker is still the one `build_worker` makes, whatever else it configures."""

    def __init__(self, size: int) -> None:
        super().__init__("tests.bench.cache-size")
        self.size = size

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        config = super().configure_worker(config)
        config["max_cached_workflows"] = self.size
        return config


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--kind", choices=["ticket", "bare"], required=True)
    parser.add_argument("--policy")
    parser.add_argument("--sandbox", choices=["on", "off"], default="on")
    parser.add_argument("--metrics", choices=["on", "off"], default="on")
    parser.add_argument("--max-cached-workflows", type=int, default=None, help="default: the SDK's (1000)")
    parser.add_argument("--webhook-url", default=None, help="replaces the policy's notification endpoints")
    parser.add_argument("--helpdesk-url", default=None)
    parser.add_argument("--store-url", default=None, help="record store (default: the settings' default)")
    args = parser.parse_args()
    configure("console", "WARNING")
    runtime = metrics_runtime("127.0.0.1:0") if args.metrics == "on" else None
    plugins = [] if args.max_cached_workflows is None else [CacheSize(args.max_cached_workflows)]
    client = await Client.connect(
        args.address, data_converter=pydantic_data_converter, runtime=runtime, plugins=plugins
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with httpx.AsyncClient() as http:
        if args.kind == "ticket":
            settings = Settings(
                _env_file=None,
                policy_path=Path(args.policy),
                workflow_sandbox=args.sandbox == "on",
                webhook_secret=SecretStr("whsec_YmVuY2gtc2VjcmV0LWZvci10aGUtYmVuY2htYXJrLTE="),
                webhook_url=args.webhook_url,
                helpdesk_url=args.helpdesk_url,
                store_url=None if args.store_url is None else SecretStr(args.store_url),
            )
            worker = build_worker(client, settings, http, task_queue=args.task_queue)
        else:
            worker = Worker(client, task_queue=args.task_queue, workflows=[BareTicket], activities=[bare_notify])
        async with worker:
            print("ready", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
