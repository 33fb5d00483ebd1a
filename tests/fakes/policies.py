"""The policy the connector tests run under: the default one with short SLAs, one connector
endpoint and its `helpdesks` mapping (the end-to-end, outage and hostile tests, and the bench)."""

from __future__ import annotations

from typing import Any

from tests.conftest import policy_doc

HELPDESK_EVENTS = ["ticket.reassigned", "ticket.escalated", "ticket.cc", "sla.breached", "ticket.resolved"]


def connected_policy(
    name: str,
    mapping: dict[str, Any],
    *,
    first_response: str = "PT2S",
    resolution: str = "PT4S",
    event_types: list[str] | None = None,
    retry_max_interval: str | None = None,
) -> dict[str, Any]:
    """Every tier and priority on these targets (routes' own targets dropped), escalation by hand
    after a second in tier, and endpoint `name` acting on `event_types` (default: the helpdesk events)."""
    doc = policy_doc()
    for tier in doc["sla"].values():
        for priority in tier:
            tier[priority] = {"first_response": first_response, "resolution": resolution}
    for route in doc["routes"]:
        route.pop("targets", None)
    doc["guards"]["min_time_in_tier"] = "PT1S"
    if retry_max_interval is not None:  # a short one: the wait after a 429 is then its Retry-After
        doc["notifications"]["retry_max_interval"] = retry_max_interval
    doc["notifications"]["endpoints"].append({"name": name, "event_types": event_types or HELPDESK_EVENTS})
    doc["helpdesks"] = {name: mapping}
    return doc
