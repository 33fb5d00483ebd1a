"""A worker in its own process, for tests that kill it: `python -m tests.worker_process ADDRESS`.
Settings from the environment (`ESCALATIONS_TASK_QUEUE`, `ESCALATIONS_POLICY_PATH`, the codec keys, ...);
prints `ready` once polling."""

from __future__ import annotations

import asyncio
import sys

from temporalio.client import Client

from config.settings import Settings
from workers.codec import data_converter
from workers.worker import build_worker, http_client


async def main(address: str) -> None:
    settings = Settings(_env_file=None)
    client = await Client.connect(address, data_converter=data_converter(settings))
    async with http_client(settings) as http:
        worker = build_worker(client, settings, http)
        async with worker:
            print("ready", flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
