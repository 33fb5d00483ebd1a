"""The long-running processes, alone or together, with graceful shutdown.

- `escalations worker`: the Temporal worker, with `/healthz` and `/readyz` on `ESCALATIONS_WORKER_HEALTH_PORT`.
- `escalations api`: the HTTP API (it starts no workflows' code; tickets run on the workers).
- `escalations codec-server`: decrypts payloads for the Temporal Web UI and CLI (no Temporal connection).
- `escalations run`: all of them in one process; on the embedded default it first starts the Temporal dev
  server (SQLite in the data folder, Web UI with the codec server as its codec endpoint).

SIGTERM and SIGINT: the HTTP servers stop accepting, the worker stops polling and lets running activities
finish for up to `ESCALATIONS_GRACEFUL_SHUTDOWN_SECONDS` (then they are cancelled and Temporal retries them
elsewhere), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Collection
from typing import Any, Literal

import structlog
import uvicorn

from config.policy import PolicyError
from config.settings import Settings
from workers.codec import CodecError, codec_for
from workers.connection import connect, register_search_attributes
from workers.devserver import DevServer, set_retention
from workers.logs import configure
from workers.telemetry import TelemetryError, setup_tracing, shutdown_tracing, start_worker_metrics

log = structlog.get_logger("worker")

Role = Literal["worker", "api", "codec"]
ALL_ROLES: frozenset[Role] = frozenset({"worker", "api", "codec"})


async def prepare_store(settings: Settings) -> None:
    """Open the record store and apply its migrations. A database that is down does not stop the
    worker: the tickets keep their events until it is back (the activity retries without limit)."""
    from store.repository import shared_store

    try:
        store = await asyncio.to_thread(shared_store, settings.store_database_url)
        log.info("store.ready", url=store.describe(), revision=store.revision())
    except Exception as err:
        log.warning("store.unavailable", error=f"{type(err).__name__}: {str(err)[:300]}")


async def serve(
    settings: Settings,
    *,
    with_api: bool = True,
    roles: Collection[Role] | None = None,
    start_devserver: bool | None = None,
) -> int:
    """Run the given roles (default: worker, and the API unless `with_api` is false) until SIGTERM/SIGINT."""
    configure(settings.log_format, settings.log_level)
    wanted: set[Role] = set(roles) if roles is not None else ({"worker", "api"} if with_api else {"worker"})
    try:
        codec = codec_for(settings, create=True)  # the embedded default's key is made by the service
    except CodecError as err:
        log.error("codec.keys_invalid", error=str(err))
        print(f"error: {err}", file=sys.stderr)
        return 2
    if codec is None:
        log.warning("codec.disabled", hint="payloads are stored in plain text (ESCALATIONS_CODEC_ENABLED=false)")
        wanted.discard("codec")
    else:
        log.info("codec.enabled", key_id=codec.ring.current, keys=len(codec.ring.keys))
    if "worker" in wanted:
        from activities.policy_file import load_checked_policy  # the worker's own check, URLs included

        try:
            policy = load_checked_policy(settings.policy_path, settings)
        except PolicyError as err:
            log.error("policy.invalid", path=str(settings.policy_path), problems=err.problems)
            print(err, file=sys.stderr)
            return 2
        log.info(
            "policy.loaded", path=str(settings.policy_path), version=policy.version, fingerprint=policy.fingerprint()
        )
        if settings.uses_dev_secret:
            log.warning("webhooks.dev_secret", hint="set ESCALATIONS_WEBHOOK_SECRET before going to production")

    if "worker" in wanted:
        try:
            start_worker_metrics(settings)  # before any client: the worker's runtime serves /metrics
        except TelemetryError as err:
            log.error("metrics.unavailable", error=str(err))
            print(f"error: {err}", file=sys.stderr)
            return 2
    if wanted & {"worker", "api"}:
        service = "escalations" if {"worker", "api"} <= wanted else f"escalations-{min(wanted & {'worker', 'api'})}"
        setup_tracing(settings, service)

    if start_devserver is None:
        start_devserver = settings.embedded and "worker" in wanted and "api" in wanted
    devserver = DevServer(settings, codec_endpoint=codec is not None) if start_devserver else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if devserver:
            await devserver.start()
        return await _serve_roles(settings, wanted, codec, stop, embedded_server=devserver is not None)
    finally:
        shutdown_tracing()
        if devserver:
            devserver.stop()


async def run_all(settings: Settings, *, with_api: bool = True) -> int:
    """`escalations run`: worker, API and codec server in one process; the dev server on the embedded default."""
    roles: set[Role] = {"worker", "codec"}
    if with_api:
        roles.add("api")
    if not settings.embedded and settings.codec_server_tokens is None:
        roles.discard("codec")  # production without codec tokens: run it as its own process when wanted
    return await serve(settings, roles=roles, start_devserver=settings.embedded)


async def run_alone(settings: Settings, command: str) -> int:
    """`escalations worker|api|codec-server`: one role, against the configured (or embedded) address."""
    role: Role = {"worker": "worker", "api": "api", "codec-server": "codec"}[command]  # type: ignore[assignment]
    return await serve(settings, roles={role}, start_devserver=False)


async def _serve_roles(
    settings: Settings, wanted: set[Role], codec: Any, stop: asyncio.Event, *, embedded_server: bool = False
) -> int:
    from workers.health import health_app, quiet_server

    # Ports first: one a setting names and another process holds is an error in one line; the worker's
    # default health port taken (a second worker on one machine) only costs that worker its endpoints.
    ports = {
        "codec": ("codec" in wanted, settings.codec_server_host, settings.codec_server_port, "codec_server_port"),
        "api": ("api" in wanted, settings.api_host, settings.api_port, "api_port"),
        "health": (
            "worker" in wanted and "api" not in wanted and settings.worker_health_port is not None,
            settings.worker_health_host,
            settings.worker_health_port or 0,
            "worker_health_port",
        ),
    }
    health_on = ports["health"][0]
    for name, (on, host, port, setting) in ports.items():
        if on and not _port_free(host, port):
            if name == "health" and setting not in settings.model_fields_set:
                log.warning("health.port_taken", port=port, hint=f"set ESCALATIONS_{setting.upper()} per worker")
                health_on = False
                continue
            print(f"error: ESCALATIONS_{setting.upper()}: {host}:{port} is taken by another process", file=sys.stderr)
            return 2

    servers: list[tuple[str, uvicorn.Server]] = []
    if "codec" in wanted:
        from workers.codec_server import cors_origins, create_codec_app, tokens

        try:
            app = create_codec_app(codec, tokens(settings), cors_origins(settings))
        except CodecError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        servers.append(("codec", quiet_server(app, settings.codec_server_host, settings.codec_server_port)))

    client = None
    if wanted & {"worker", "api"}:
        # The API alone starts while Temporal is down (its /readyz answers 503 until it is back); a worker
        # needs the connection to start polling.
        client = await connect(settings, lazy="worker" not in wanted)
        if embedded_server:
            retention = await set_retention(client, client.namespace, settings.retention_days)
            log.info("namespace.retention", namespace=client.namespace, retention=str(retention))
        await prepare_store(settings)
    worker = None
    worker_task: asyncio.Task[Any] | None = None
    tasks: dict[str, asyncio.Task[Any]] = {}
    async with _http_client(settings) as http:
        if "worker" in wanted:
            assert client is not None
            from workers.worker import build_worker

            try:
                added = await register_search_attributes(client, client.namespace)
                if added:
                    log.info("search_attributes.registered", names=added)
            except Exception as err:  # Temporal Cloud: registered out of band (docs/operations.md)
                log.warning("search_attributes.not_registered", error=str(err))
            worker = build_worker(client, settings, http)
            worker_task = asyncio.create_task(worker.run(), name="worker")
            from review.watch import ensure_spike_watch

            await ensure_spike_watch(client, settings)  # the review.spike check, once per namespace
            tasks["worker"] = worker_task
            if health_on:
                alive = worker_task
                health = health_app(client, lambda: not alive.done())
                health_port = settings.worker_health_port or 0
                servers.append(("health", quiet_server(health, settings.worker_health_host, health_port)))
        if "api" in wanted:
            assert client is not None
            from api.server import build_server

            servers.append(("api", build_server(settings, client)))
        for name, server in servers:
            tasks[name] = asyncio.create_task(server.serve(), name=name)
        log.info(
            "process.started",
            roles=sorted(wanted),
            task_queue=settings.task_queue,
            namespace=client.namespace if client else None,
            address=settings.address if client else None,
            api=f"http://{settings.api_host}:{settings.api_port}" if "api" in wanted else None,
            codec_server=f"http://{settings.codec_server_host}:{settings.codec_server_port}"
            if "codec" in wanted
            else None,
            health=f"http://{settings.worker_health_host}:{settings.worker_health_port}"
            if any(name == "health" for name, _ in servers)
            else None,
        )
        if "worker" in wanted:
            log.info("worker.started", task_queue=settings.task_queue)
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
        log.info("process.stopping", reason="signal" if waiter in done else "a task ended")
        for _, server in servers:
            server.should_exit = True
        if worker is not None:
            log.info("worker.stopping", graceful_shutdown_seconds=settings.graceful_shutdown_seconds)
            await worker.shutdown()  # stops polling; running activities get the graceful timeout
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        waiter.cancel()
        failed = [t for t in done if t is not waiter and not t.cancelled() and t.exception() is not None]
        for task in failed:
            log.error("process.task_failed", task=task.get_name(), error=repr(task.exception()))
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
    log.info("worker.stopped" if worker is not None else "process.stopped")
    return 0


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _http_client(settings: Settings) -> Any:
    from workers.worker import http_client

    return http_client(settings)
