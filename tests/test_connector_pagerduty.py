"""The PagerDuty connector against a local Events API v2 (tests/fakes/pagerduty.py): one alert per ticket life."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from activities.helpdesks.base import Connector, HelpdeskError, InboundRefused
from activities.helpdesks.pagerduty import PagerDuty, dedup_key
from config.helpdesk_schema import HelpdeskMapping
from config.settings import EndpointSettings
from tests.fakes.pagerduty import FakePagerDuty
from workflows.messages import OutboundEvent

PD = PagerDuty()
ROUTING_KEY = "R0UT1NGK3Y0000000000000000000001"  # 32 characters, as an integration key
MAPPING = HelpdeskMapping(kind="pagerduty")


def creds(url: str | None, token: str | None = ROUTING_KEY) -> EndpointSettings:
    return EndpointSettings.model_validate({"url": url, "token": token, "timeout_seconds": 5})


def outbound(type_: str, **fields: Any) -> OutboundEvent:
    values: dict[str, Any] = {
        "id": "msg_ticket-T-1_abc123_4",
        "type": type_,
        "occurred_at": datetime(2026, 3, 2, 9, tzinfo=UTC),
        "ticket_id": "T-1",
        "workflow_id": "ticket-T-1",
        "tier": 3,
        "department": "billing",
        "priority": "urgent",
        "rule": "ladders.resolution[2]",
        "reason": "resolution SLA breached",
        "subject": "Refund never arrived",
    }
    return OutboundEvent.model_validate(values | fields)


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    with FakePagerDuty() as fake:
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def test_it_is_an_outbound_only_connector() -> None:
    connector: Connector = PD
    assert connector.kind == "pagerduty"
    with pytest.raises(InboundRefused, match="PagerDuty sends no events here"):
        PD.verify(b"{}", {}, creds(None), 300)
    with pytest.raises(InboundRefused, match="PagerDuty sends no events here"):
        PD.read(b"{}", MAPPING, "")


def test_one_dedup_key_per_ticket_life() -> None:
    assert dedup_key(outbound("sla.breached")) == "ticket-T-1:abc123"
    assert dedup_key(outbound("ticket.resolved", id="msg_ticket-T-1_abc123_9")) == "ticket-T-1:abc123"
    assert dedup_key(outbound("sla.breached", id="msg_ticket-T-1_def456_1")) == "ticket-T-1:def456"
    assert dedup_key(outbound("sla.breached", id="something-else")) == "ticket-T-1:T-1"
    long_id = "T" * 200
    key = dedup_key(outbound("sla.breached", ticket_id=long_id, workflow_id=f"ticket-{long_id}", id="x"))
    assert len(key) <= 255 and key != dedup_key(outbound("sla.breached", ticket_id=long_id, workflow_id="y", id="x"))


async def test_an_escalation_triggers_and_the_resolution_resolves_the_same_alert(
    pagerduty: FakePagerDuty, client: httpx.AsyncClient
) -> None:
    applied = await PD.apply(outbound("ticket.escalated"), None, [], MAPPING, creds(pagerduty.url), client, "k1")
    assert applied.calls == ["POST /v2/enqueue 202 trigger ticket-T-1:abc123"] and applied.skipped is None
    [alert] = pagerduty.alerts
    assert (alert.dedup_key, alert.severity, alert.status) == ("ticket-T-1:abc123", "critical", "triggered")
    assert alert.summary == "[T-1] ticket.escalated: Refund never arrived: resolution SLA breached"
    sent = pagerduty.requests[0].json()
    assert sent["routing_key"] == ROUTING_KEY and sent["event_action"] == "trigger"
    assert sent["payload"]["source"] == "escalations:billing" and sent["payload"]["custom_details"]["tier"] == 3
    again = await PD.apply(outbound("sla.breached"), None, [], MAPPING, creds(pagerduty.url), client, "k2")
    assert again.calls and len(pagerduty.alerts) == 1 and alert.log == ["trigger", "trigger"]  # one alert a life
    resolved = await PD.apply(outbound("ticket.resolved"), None, [], MAPPING, creds(pagerduty.url), client, "k3")
    assert resolved.calls == ["POST /v2/enqueue 202 resolve ticket-T-1:abc123"] and alert.status == "resolved"
    assert "payload" not in pagerduty.requests[-1].json()


@pytest.mark.parametrize(("priority", "severity"), [("high", "error"), ("normal", "warning"), ("low", "info")])
async def test_severity_follows_the_priority_and_the_summary_fits(
    pagerduty: FakePagerDuty, client: httpx.AsyncClient, priority: str, severity: str
) -> None:
    event = outbound("approval.requested", priority=priority, reason="x" * 5000)
    await PD.apply(event, None, [], MAPPING, creds(pagerduty.url), client, "k")
    [alert] = pagerduty.alerts
    assert alert.severity == severity and len(alert.summary) == 1024


async def test_what_does_not_page_is_skipped(pagerduty: FakePagerDuty, client: httpx.AsyncClient) -> None:
    below = await PD.apply(
        outbound("sla.breached", tier=1, data={"top_tier": 3}), None, [], MAPPING, creds(pagerduty.url), client, "k"
    )
    assert below.calls == [] and below.skipped is not None and "below the top tier" in below.skipped
    other = await PD.apply(outbound("ticket.reassigned"), None, [], MAPPING, creds(pagerduty.url), client, "k")
    assert other.calls == [] and other.skipped is not None
    assert pagerduty.requests == []
    top = await PD.apply(
        outbound("sla.breached", tier=3, data={"top_tier": 3}), None, [], MAPPING, creds(pagerduty.url), client, "k"
    )
    assert top.calls and len(pagerduty.alerts) == 1


async def test_an_invalid_event_is_permanent_and_a_rate_limit_waits(
    pagerduty: FakePagerDuty, client: httpx.AsyncClient
) -> None:
    with pytest.raises(HelpdeskError, match="invalid event; Event object is invalid; Length of 'routing_key'") as bad:
        await PD.apply(outbound("sla.breached"), None, [], MAPPING, creds(pagerduty.url, "short"), client, "k")
    assert (bad.value.status, bad.value.permanent) == (400, True) and "short" not in str(bad.value)
    pagerduty.rate_limit_next(1)
    with pytest.raises(HelpdeskError) as limited:
        await PD.apply(outbound("sla.breached"), None, [], MAPPING, creds(pagerduty.url), client, "k")
    assert (limited.value.status, limited.value.permanent, limited.value.retry_after) == (429, False, 30.0)
    pagerduty.down = True
    with pytest.raises(HelpdeskError) as down:
        await PD.apply(outbound("sla.breached"), None, [], MAPPING, creds(pagerduty.url), client, "k")
    assert (down.value.status, down.value.permanent) == (503, False)
    pagerduty.stop()
    with pytest.raises(HelpdeskError) as refused:
        await PD.apply(outbound("sla.breached"), None, [], MAPPING, creds(pagerduty.url), client, "k")
    assert (refused.value.status, refused.value.permanent) == (None, False)
    with pytest.raises(HelpdeskError, match="no routing key") as unset:
        await PD.apply(outbound("sla.breached"), None, [], MAPPING, creds(pagerduty.url, None), client, "k")
    assert unset.value.permanent and pagerduty.alerts == []


async def test_check_sends_nothing_and_answers_in_one_line(pagerduty: FakePagerDuty, client: httpx.AsyncClient) -> None:
    good = await PD.check(MAPPING, creds(pagerduty.url), client)
    assert good.ok and good.message.startswith("ok: routing key of 32 characters") and good.own_user is None
    default = await PD.check(MAPPING, creds(None), client)
    assert default.ok and "https://events.pagerduty.com/v2/enqueue" in default.message
    short = await PD.check(MAPPING, creds(None, "abc"), client)
    assert not short.ok and "3 characters" in short.message
    unset = await PD.check(MAPPING, creds(None, None), client)
    assert not unset.ok and unset.message.startswith("no routing key")
    assert pagerduty.requests == []
    for answer in (good, default, short, unset):
        assert "\n" not in answer.message and ROUTING_KEY not in answer.message


def test_setup_text_names_the_integration_key() -> None:
    text = PD.setup_text(MAPPING, "https://esc.example.com/helpdesks/pagerduty")
    assert "Events API v2" in text and "Integration Key" in text and "`token`" in text
