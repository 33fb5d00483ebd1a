"""What the connectors share: reading a verified body, checking an inbound event against this
product's models, and calls to a helpdesk's HTTP API whose errors say whether to retry (and when)
and never carry the token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError

from activities.helpdesks.base import Act, HelpdeskError, Inbound, InboundInvalid
from config.settings import EndpointSettings
from workflows.models import ACTIONS, TicketRequest

RATE_LIMIT_DEFAULT = 60.0  # seconds, for a 429 without Retry-After: helpdesks count their limits per minute


def header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InboundInvalid("body", f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InboundInvalid("body", "not a JSON object")
    return data


def dig(data: Any, *path: str) -> Any:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def validated(
    event_id: str, ticket_id: str, open: dict[str, Any] | None = None, acts: list[tuple[str, Any]] | None = None
) -> Inbound:
    """The Inbound, once the ticket and every action payload pass this product's models (else the field)."""
    try:
        if open is not None:
            TicketRequest.model_validate(open)
        for action, payload in acts or []:
            ACTIONS[action].model_validate(payload)
    except ValidationError as e:
        where = ".".join(str(p) for p in e.errors()[0]["loc"])
        raise InboundInvalid(where or "body", e.errors()[0]["msg"]) from None
    actions = [Act(ticket_id, a, p, f"{event_id}:{n}") for n, (a, p) in enumerate(acts or [])]
    return Inbound(event_id, open=open, actions=actions)


def retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


class HelpdeskApi:
    """Calls to one helpdesk account, each recorded as 'METHOD path status'; errors never carry the token."""

    def __init__(
        self, name: str, base: str, auth: httpx.Auth, credentials: EndpointSettings, client: httpx.AsyncClient,
        detail: Callable[[Any], str],
    ) -> None:  # fmt: skip
        self.name, self.base, self.auth, self.client, self.detail = name, base.rstrip("/"), auth, client, detail
        self.timeout = credentials.timeout_seconds
        self.calls: list[str] = []

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self.client.request(
                method, self.base + path, json=body, auth=self.auth, timeout=self.timeout,
                headers={"Accept": "application/json"},
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise HelpdeskError(f"{method} {path}: {type(exc).__name__}", status=None, permanent=False) from None
        status = response.status_code
        self.calls.append(f"{method} {path} {status}")
        if 200 <= status < 300:
            try:
                return response.json() if response.content else None
            except ValueError:  # not its API (a proxy's page, a wrong URL): retried, said plainly
                raise HelpdeskError(
                    f"{method} {path}: {self.name} answered {status} with a body that is not JSON",
                    status=status, permanent=False,
                ) from None  # fmt: skip
        try:
            detail = self.detail(response.json())[:300]
        except ValueError:
            detail = response.text.strip().replace("\n", " ")[:200]
        transient = status in (408, 409, 425, 429) or status >= 500
        wait = retry_after(response.headers.get("Retry-After")) if transient else None
        if status == 429 and wait is None:
            wait = RATE_LIMIT_DEFAULT
        raise HelpdeskError(
            f"{method} {path}: {self.name} answered {status}" + (f": {detail}" if detail else ""),
            status=status, permanent=not transient, retry_after=wait,
        )  # fmt: skip
