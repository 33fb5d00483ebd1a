"""Endpoint URLs: http(s) only, to allowlisted hosts, wherever one is configured."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from activities.ticket_activities import TicketActivities
from config.settings import Settings
from config.urls import EndpointUrlError, check_endpoint_url
from tests.conftest import policy_doc

ALLOWED = ["127.0.0.1", "localhost", "::1", "*.example.com"]


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8099/events", "https://hooks.example.com/x?token=s", "http://[::1]:8080/", "http://LOCALHOST/"],
)
def test_allowed_urls_pass(url: str) -> None:
    assert check_endpoint_url(url, ALLOWED) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1/x", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("javascript:alert(1)", "scheme 'javascript'"),
        ("https://example.com/", "host 'example.com' is not in"),
        ("http://127.0.0.1@evil.test/", "host 'evil.test'"),
        ("http://127.0.0.1.evil.test/", "host '127.0.0.1.evil.test'"),
        ("http://evil.test\\@127.0.0.1/", "backslash"),
        ("http://127.0.0.1:99999/", "not a URL"),
        ("http:///path", "names no host"),
        ("http://127.0.0.1/\nHost: x", "whitespace"),
        ("http://169.254.169.254/latest/meta-data", "host '169.254.169.254'"),
    ],
)
def test_other_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(EndpointUrlError, match=re.escape(reason)):
        check_endpoint_url(url, ALLOWED)


def test_settings_refuse_an_endpoint_url_off_the_allowlist() -> None:
    with pytest.raises(ValidationError, match=r"webhook_url: host 'hooks\.evil\.test'"):
        Settings(_env_file=None, webhook_url="https://hooks.evil.test/x")
    with pytest.raises(ValidationError, match="helpdesk_url: scheme 'gopher'"):
        Settings(_env_file=None, helpdesk_url="gopher://127.0.0.1/")
    allowed = Settings(
        _env_file=None, webhook_url="https://hooks.evil.test/x", allowed_endpoint_hosts="hooks.evil.test"
    )
    assert allowed.endpoint_hosts == ["hooks.evil.test"]


def test_a_policy_whose_endpoint_is_off_the_allowlist_is_not_loaded(tmp_path: Path) -> None:
    doc = policy_doc()
    doc["notifications"]["endpoints"] = [{"name": "exfil", "url": "https://203.0.113.9/steal"}]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    activities = TicketActivities(Settings(_env_file=None, policy_path=path), http=None)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="no valid policy"):
        activities._current_policy()


def test_named_endpoints_are_checked_too() -> None:
    with pytest.raises(ValidationError, match=r"endpoints\.slack\.url: host 'hooks\.slack\.com'"):
        Settings(_env_file=None, endpoints={"slack": {"url": "https://hooks.slack.com/services/T/B/secret"}})
    with pytest.raises(ValidationError, match=r"endpoints\.mail\.host: host 'smtp\.evil\.test'"):
        Settings(_env_file=None, endpoints={"mail": {"host": "smtp.evil.test"}})
    ok = Settings(
        _env_file=None,
        endpoints={"slack": {"url": "https://hooks.slack.com/services/T/B/secret"}},
        allowed_endpoint_hosts="hooks.slack.com",
    )
    assert ok.endpoints["slack"].url is not None


def test_an_activity_never_resolves_an_endpoint_off_the_allowlist() -> None:
    from activities.channels import EndpointMissing, resolve_endpoint

    settings = Settings(_env_file=None)
    # A URL carried by an old notice (or smuggled into a carried state) is checked at delivery.
    with pytest.raises(EndpointMissing, match=r"host '203\.0\.113\.9' is not in"):
        resolve_endpoint("exfil", "webhook", settings, None, "http://203.0.113.9/steal")
    assert resolve_endpoint("ok", "webhook", settings, None, "http://127.0.0.1:1/x").url == "http://127.0.0.1:1/x"
