"""A worker in its own process, for tests that kill it: `python -m tests.worker_process ADDRESS`.
Settings from the environment (`ESCALATIONS_TASK_QUEUE`, `ESCALATIONS_POLICY_PATH`, ...);
prints `ready` once polling."""

from __future__ import annotations

import asyncio
import sys

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from config.settings import Settings
from workers.worker import build_worker, http_client


async def main(address: str) -> None:
    settings = Settings(_env_file=None)
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    async with http_client(settings) as http:
        worker = build_worker(client, settings, http)
        async with worker:
            print("ready", flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
