"""Health and readiness of the processes, and the small HTTP servers they run beside their main task.

- `/healthz` (liveness): the process answers and its main task is alive. An orchestrator restarts it otherwise.
- `/readyz` (readiness): that, and the Temporal frontend answers its gRPC health check within 3 s. The API
  answers 503 while Temporal is unreachable, so a load balancer stops sending it requests.

`escalations worker` serves both on `ESCALATIONS_WORKER_HEALTH_PORT`; the HTTP API serves them beside its
routes; the codec server has its own (it needs no Temporal connection).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from datetime import timedelta
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from temporalio.client import Client

READY_TIMEOUT = timedelta(seconds=3)


async def temporal_ready(client: Client) -> tuple[bool, str]:
    """(ready, why): the frontend's gRPC health check, with a short deadline."""
    try:
        ok = await client.service_client.check_health(timeout=READY_TIMEOUT)
    except Exception as err:  # unreachable, TLS, auth: all mean not ready
        return False, f"Temporal not reachable: {type(err).__name__}: {err}"[:300]
    return (True, "ok") if ok else (False, "Temporal frontend reports not serving")


def add_health_routes(
    app: FastAPI,
    client: Client | None,
    alive: Callable[[], bool] = lambda: True,
    openapi_extra: dict[str, Any] | None = None,
) -> None:
    """`/healthz` and `/readyz` (no authentication: they say nothing about tickets)."""

    @app.get("/healthz", tags=["ops"], openapi_extra=openapi_extra)
    async def healthz() -> JSONResponse:
        ok = alive()
        return JSONResponse({"status": "ok" if ok else "stopped"}, status_code=200 if ok else 503)

    @app.get("/readyz", tags=["ops"], openapi_extra=openapi_extra)
    async def readyz() -> JSONResponse:
        if not alive():
            return JSONResponse({"status": "stopped"}, status_code=503)
        if client is None:
            return JSONResponse({"status": "ok"})
        ok, why = await temporal_ready(client)
        return JSONResponse({"status": "ok" if ok else "unavailable", "temporal": why}, status_code=200 if ok else 503)


def health_app(client: Client | None, alive: Callable[[], bool]) -> FastAPI:
    app = FastAPI(title="escalations worker health", docs_url=None, redoc_url=None, openapi_url=None)
    add_health_routes(app, client, alive)
    return app


def quiet_server(app: Any, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server that leaves SIGTERM/SIGINT to the process (which stops everything in order)."""
    return _QuietServer(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off"))


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
