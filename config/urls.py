"""Endpoint URLs: http or https only, to a host on the allowlist (`ESCALATIONS_ALLOWED_ENDPOINT_HOSTS`).

Applied wherever an endpoint URL is configured: the settings (`WEBHOOK_URL`, `HELPDESK_URL`), the
policy's `notifications.endpoints` when the worker loads the policy, and where an activity resolves
an endpoint by name. A URL that fails is refused with the reason; nothing is sent to it.

The allowlist holds host names or addresses, exact (`hooks.example.com`, `10.0.0.7`) or as a
suffix wildcard (`*.example.com`: any host under example.com, not example.com itself). The
default allows only the loopback host names, so a production deployment names its receivers.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

DEFAULT_ALLOWED_HOSTS = "127.0.0.1,localhost,::1"


class EndpointUrlError(ValueError):
    pass


def parse_hosts(raw: str) -> list[str]:
    return [h.strip().lower().strip("[]") for h in raw.split(",") if h.strip()]


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def check_endpoint_url(url: str, allowed: Iterable[str]) -> str:
    """`url` if it is http(s) to an allowed host; otherwise `EndpointUrlError` saying why."""
    if len(url) > 2048:
        raise EndpointUrlError("the URL is longer than 2048 characters")
    if any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in url):
        raise EndpointUrlError("the URL holds whitespace, control characters or a backslash")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as err:
        raise EndpointUrlError(f"not a URL: {err}") from None
    if parts.scheme not in ("http", "https"):
        raise EndpointUrlError(f"scheme {parts.scheme or '(none)'!r} is not allowed; use http or https")
    if not host:
        raise EndpointUrlError("the URL names no host")
    hosts = list(allowed)
    if not host_allowed(host, hosts):
        raise EndpointUrlError(
            f"host {host!r} is not in ESCALATIONS_ALLOWED_ENDPOINT_HOSTS ({', '.join(hosts) or 'empty'})"
        )
    return url


def endpoint_problems(endpoints: Iterable[tuple[str, str]], allowed: Iterable[str]) -> list[str]:
    """'place: reason' lines for (place, url) pairs that fail `check_endpoint_url`."""
    hosts = list(allowed)
    problems = []
    for place, url in endpoints:
        try:
            check_endpoint_url(url, hosts)
        except EndpointUrlError as err:
            problems.append(f"{place}: {err}")
    return problems
