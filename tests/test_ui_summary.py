"""The ticket in the Temporal Web UI: a summary on its list row, details on its page, kept current,
and nothing personal in either (on the dev server, which stores and serves them like production)."""

from __future__ import annotations

import re
from typing import Any

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.testing import WorkflowEnvironment

from tests.helpers import AGENT, LEAD, ticket, until_async

PERSONAL = ["Charged twice", "4111", "Zoë Example", "zoe@example.com", "c-secret-42", "vip-note"]


async def test_summary_and_details_say_where_the_ticket_stands_and_nothing_personal(
    dev_env: WorkflowEnvironment, make_harness: Any
) -> None:
    async with make_harness(dev_env, None) as h:
        t = ticket(
            subject="Charged twice, card 4111 1111 1111 1111",
            description="Zoë Example, zoe@example.com",
            category="billing",
            priority="high",
            customer={"id": "c-secret-42", "name": "Zoë Example", "email": "zoe@example.com"},
            metadata={"note": "vip-note"},
        )
        await h.tickets.open(t)
        handle = h.tickets.handle(t.ticket_id)

        async def details() -> str:
            meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
            return str(meta.current_details)

        opened = (await until_async(lambda: _nonempty(details())))[0]
        summary = await (await handle.describe()).static_summary()
        await h.tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT})
        acknowledged = await details()
        await h.tickets.act(t.ticket_id, "escalate", {"actor": LEAD, "kind": "hierarchical", "reason": "hard"})
        escalated = await details()

    assert summary == f"{t.ticket_id} · high · email · billing"
    assert opened.startswith(f"**{t.ticket_id}**: open") and "tier 1, department billing" in opened
    assert "priority: high; channel: email; category: billing" in opened and "next deadline: first_response" in opened
    assert "policy: 2026.11-default+" in opened and "SLA breached: no; escalations: 0" in opened
    assert acknowledged.startswith(f"**{t.ticket_id}**: acknowledged") and "next deadline: resolution" in acknowledged
    assert "tier 2, department billing" in escalated and "escalations: 1" in escalated
    for text in (summary or "", opened, acknowledged, escalated):
        for secret in PERSONAL:
            assert secret not in text
        assert not re.search(r"\bann\b", text) and "lee.lead" not in text  # agents are people too


async def _nonempty(text: Any) -> list[str]:
    value = await text
    return [value] if value else []
