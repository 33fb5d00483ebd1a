"""The policy side of the connectors, in plain Python: `policy check` refuses a mapping naming what
does not exist here and two accounts on one ticket prefix; a ticket freezes no mapping but its
connector endpoints' prefix, so a ticket from elsewhere gets no notice to a helpdesk at all."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from config.policy import Policy, PolicyError
from config.snapshots import ticket_policy
from tests.conftest import policy_doc
from workflows.messages import OutboundEvent
from workflows.notices import plan


def connected(**helpdesks: dict[str, Any]) -> dict[str, Any]:
    doc = policy_doc(helpdesks=helpdesks)
    doc["notifications"]["endpoints"] += [{"name": name, "event_types": ["ticket.escalated"]} for name in helpdesks]
    return doc


def problems(doc: dict[str, Any]) -> str:
    with pytest.raises((PolicyError, ValueError)) as refused:
        Policy.model_validate(doc)
    return str(refused.value)


def test_policy_check_names_what_the_mapping_gets_wrong() -> None:
    bad = connected(zd={"kind": "zendesk", "queues": {"billing-t9": "1"}, "priorities": {"asap": "urgent"}})
    text = problems(bad)
    assert "helpdesks.zd.queues.billing-t9: unknown queue" in text
    assert "helpdesks.zd.priorities.asap: unknown priority" in text
    two = connected(eu={"kind": "zendesk"}, us={"kind": "zendesk"})
    assert "helpdesks.us.ticket_prefix: 'ZD-' is eu's too" in problems(two)
    Policy.model_validate(connected(eu={"kind": "zendesk", "ticket_prefix": "EU-"}, us={"kind": "zendesk"}))


def test_a_ticket_freezes_only_the_prefix_and_others_get_no_helpdesk_notice() -> None:
    policy = Policy.model_validate(connected(zd={"kind": "zendesk", "own_user": "9"}, pd={"kind": "pagerduty"}))
    frozen = ticket_policy(policy, 2026)
    assert frozen.helpdesks == {}
    by_name = {e.name: e for e in frozen.notifications.endpoints}
    assert by_name["zd"].ticket_prefix == "ZD-" and by_name["pd"].ticket_prefix is None  # paging: any ticket

    def planned(ticket_id: str) -> list[str]:
        event = OutboundEvent(
            id=f"msg_ticket-{ticket_id}_l_1",
            type="ticket.escalated",
            occurred_at=datetime(2026, 12, 6, tzinfo=UTC),
            ticket_id=ticket_id,
            workflow_id=f"ticket-{ticket_id}",
            tier=2,
            department="billing",
            priority="high",
            reason="r",
        )
        return sorted(p.endpoint for p in plan(frozen, event, "notify")[0])

    assert planned("ZD-5158") == ["local-receiver", "pd", "zd"]
    assert planned("API-1") == ["local-receiver", "pd"]
    assert (
        Policy.model_validate(policy_doc()).fingerprint()
        == Policy.model_validate(policy_doc(helpdesks={})).fingerprint()
    )  # a policy without connectors keeps its version
