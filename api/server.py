"""The HTTP API: how platform teams and agents reach tickets without a Temporal SDK.

Every route needs an API key (`Authorization: Bearer <key>` or `X-API-Key`) and declares the
caller roles it serves (`api/auth.py`; OpenAPI shows them as `x-roles`); the webhook route is
verified by its signature instead. Each agent action is its own route with its own body schema,
so the OpenAPI document describes exactly what the workflow accepts. A refused action answers 409
(the ticket's state forbids it) or 422 (a field is wrong), with the workflow's reason; the ticket
is unchanged. No input gets a 500 (`api/guard.py`).

This module assembles the app: the routers per resource (`api/routes/`), their shared context
and dependencies (`api/deps.py`), the error mapping (`api/errors.py`, `api/guard.py`).
"""

import contextlib
from collections.abc import Generator
from importlib.metadata import version as package_version

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from temporalio.client import Client

from api import metrics as api_metrics
from api.auth import PUBLIC, KeyRing
from api.deps import ApiContext, PageTokens, roles_of_action
from api.docs import mount_docs
from api.guard import BodyGuard, install_error_handlers
from api.routes import actions, audit, connectors, tickets, webhooks
from config.settings import Settings
from workers.health import add_health_routes
from workers.telemetry import instrument_api

__all__ = ["PageTokens", "build_server", "create_app", "roles_of_action"]


def create_app(settings: Settings, client: Client) -> FastAPI:
    context = ApiContext.build(settings, client)
    app = FastAPI(
        title="Ticket escalations",
        version=package_version("ticket-escalations"),
        description="Open support tickets as durable Temporal workflows, act on them, audit them. "
        "Each route serves the caller roles listed in its `x-roles`.",
        docs_url=None,  # served from local assets by api/docs.py: the CDN pages are blank offline
        redoc_url=None,
    )
    mount_docs(app, app.title)
    app.add_middleware(BodyGuard, max_body_bytes=settings.api_max_body_bytes)
    install_error_handlers(app)
    app.state.keys = KeyRing.from_settings(settings)
    app.state.context = context
    api_metrics.install(app)  # GET /metrics: request counts and latency by route template
    instrument_api(app, settings)  # tracing, when ESCALATIONS_TRACING is on

    add_health_routes(app, client, openapi_extra=PUBLIC)  # /healthz, /readyz (Temporal reachable)
    add_routes(app, tickets.router)
    add_routes(app, audit.router)
    add_routes(app, actions.router)
    actions.install_edge_refusals(app)

    from api.review import add_review_routes

    add_review_routes(app, settings)
    add_routes(app, webhooks.router)
    add_routes(app, connectors.router)  # after /webhooks/helpdesk, which it must not shadow
    return app


_ROUTE_FIELDS = (
    "response_model",
    "status_code",
    "tags",
    "dependencies",
    "summary",
    "description",
    "response_description",
    "responses",
    "deprecated",
    "methods",
    "operation_id",
    "response_model_include",
    "response_model_exclude",
    "response_model_by_alias",
    "response_model_exclude_unset",
    "response_model_exclude_defaults",
    "response_model_exclude_none",
    "include_in_schema",
    "response_class",
    "name",
    "callbacks",
    "openapi_extra",
    "generate_unique_id_function",
    "strict_content_type",
    "max_body_size",
    "form_limits",
)


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes added to the app as its own, each as `app.post`/`app.get` would add it.

    Not `include_router`: FastAPI 0.165 keeps an included router as one lazy entry of
    `app.routes`, and the metrics (`api/metrics.py`, by route template) and the 422 handler
    (`api/routes/actions.py`, by endpoint) read the matched route from the request's scope."""
    for route in router.routes:
        assert isinstance(route, APIRoute), route
        app.router.add_api_route(route.path, route.endpoint, **{f: getattr(route, f) for f in _ROUTE_FIELDS})


def build_server(settings: Settings, client: Client) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings, client),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    return _QuietServer(config)


class _QuietServer(uvicorn.Server):
    """Leaves SIGINT/SIGTERM to the worker process, which stops the API and the worker together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
