"""The long-running process: worker (and, by default, the HTTP API), with graceful shutdown.

`escalations run` = embedded dev server (when no address is set) + worker + API.
`escalations worker` = the worker alone, for deployments that scale it separately.
SIGTERM and SIGINT stop taking new tasks, let running ones finish, then exit.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import structlog

from config.policy import PolicyError, load_policy_file
from config.settings import Settings
from workers.connection import connect, register_search_attributes
from workers.devserver import DevServer
from workers.logs import configure
from workers.worker import build_worker, http_client

log = structlog.get_logger("worker")


async def serve(settings: Settings, *, with_api: bool = True) -> int:
    configure(settings.log_format, settings.log_level)
    try:
        policy = load_policy_file(settings.policy_path)
    except PolicyError as err:
        log.error("policy.invalid", path=str(settings.policy_path), problems=err.problems)
        print(err, file=sys.stderr)
        return 2
    log.info("policy.loaded", path=str(settings.policy_path), version=policy.version, fingerprint=policy.fingerprint())
    if settings.uses_dev_secret:
        log.warning("webhooks.dev_secret", hint="set ESCALATIONS_WEBHOOK_SECRET before going to production")

    devserver = DevServer(settings) if settings.embedded else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if devserver:
            await devserver.start()
        client = await connect(settings)
        try:
            added = await register_search_attributes(client, settings.temporal_namespace)
            if added:
                log.info("search_attributes.registered", names=added)
        except Exception as err:  # Temporal Cloud: registered out of band (README, Production)
            log.warning("search_attributes.not_registered", error=str(err))
        async with http_client(settings) as http:
            worker = build_worker(client, settings, http)
            tasks: list[asyncio.Task[Any]] = [asyncio.create_task(worker.run(), name="worker")]
            api_server = None
            if with_api:
                from api.server import build_server

                api_server = build_server(settings, client)
                tasks.append(asyncio.create_task(api_server.serve(), name="api"))
            log.info(
                "worker.started",
                task_queue=settings.task_queue,
                namespace=settings.temporal_namespace,
                address=settings.address,
                api=f"http://{settings.api_host}:{settings.api_port}" if with_api else None,
            )
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            log.info("worker.stopping")
            if api_server is not None:
                api_server.should_exit = True
            await worker.shutdown()
            await asyncio.gather(*tasks, return_exceptions=True)
            waiter.cancel()
            for task in done:
                if task is not waiter and task.exception():
                    raise task.exception()  # type: ignore[misc]
        log.info("worker.stopped")
        return 0
    finally:
        if devserver:
            devserver.stop()
