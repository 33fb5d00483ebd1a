"""A real uvicorn API and worker on a dev server, for the HTTP API's tests (not a test module)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import SecretStr
from temporalio.client import Client

from api.auth import new_key_entry
from api.server import build_server
from config.settings import Settings
from tests.conftest import TEST_SECRET, policy_doc
from tests.ports import free_port as free_port  # re-exported for the tests that import it from here
from tests.receiver import Receiver, start_receiver
from workers.worker import build_worker

INBOUND_SECRET = "whsec_aW5ib3VuZC1oZWxwZGVzay1zZWNyZXQtZm9yLXRlc3Rz"


@dataclass
class Api:
    url: str
    keys: dict[str, str]
    receiver: Receiver
    settings: Settings

    def client(self, who: str | None = "helpdesk") -> httpx.AsyncClient:
        headers = {"X-API-Key": self.keys[who]} if who else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


def new_ticket(**fields: Any) -> dict[str, Any]:
    body = {
        "ticket_id": f"API-{uuid.uuid4().hex[:8]}",
        "subject": "Printer on fire",
        "channel": "web",
        "category": "technical",
        "priority": "normal",
        "customer": {"id": "c-7", "segment": "standard"},
    }
    return body | fields


@asynccontextmanager
async def running_api(
    client: Client,
    folder: Path,
    keys: dict[str, list[str]],
    policy: dict[str, Any] | None = None,
    worker: bool = True,
    **overrides: Any,
) -> AsyncIterator[Api]:
    """uvicorn on 127.0.0.1 (and a worker on a fresh task queue) until the block ends."""
    receiver = start_receiver()
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - test set-up, once
    policy_path = folder / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy or policy_doc()))
    plain, entries = {}, []
    for name, roles in keys.items():
        plain[name], entry = new_key_entry(name, roles)
        entries.append(entry)
    values: dict[str, Any] = (
        {
            "temporal_address": "127.0.0.1:7233",  # not embedded: the dev key is not accepted
            "task_queue": f"api-{uuid.uuid4().hex[:8]}",
            "policy_path": policy_path,
            "webhook_url": f"{receiver.url}/events",
            "webhook_secret": SecretStr(TEST_SECRET),
            "api_port": free_port(),
            "api_keys": ",".join(entries),
            "inbound_webhook_secret": SecretStr(INBOUND_SECRET),
        }
        | overrides
    )
    settings = Settings.model_validate(values)
    async with httpx.AsyncClient() as http:
        for attempt in range(5):  # another process on this machine may take the free port first
            server = build_server(settings, client)
            serving = asyncio.create_task(server.serve())
            while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has only a flag
                await asyncio.sleep(0.05)
            if server.started:
                break
            with contextlib.suppress(BaseException):
                serving.result()
            if attempt == 4:
                raise RuntimeError(f"uvicorn did not start on port {settings.api_port}")
            settings = Settings.model_validate(values | {"api_port": free_port()})
        running = build_worker(client, settings, http) if worker else None
        tasks = [serving]
        if running is not None:
            tasks.append(asyncio.create_task(running.run()))
        try:
            yield Api(f"http://127.0.0.1:{settings.api_port}", plain, receiver, settings)
        finally:
            server.should_exit = True
            if running is not None:
                await running.shutdown()
            _, pending = await asyncio.wait(tasks, timeout=15)
            if pending:  # a request still waiting on Temporal: do not wait for it
                server.force_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            receiver.server.shutdown()
