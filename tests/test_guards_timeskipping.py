"""Each guard on the real workflow, refused and accepted (time-skipping server)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from api.client import ActionRefused
from tests.conftest import policy_doc
from tests.helpers import AGENT, LEAD, ticket


async def test_skip_level_escalation_refused_then_allowed_by_policy(
    ts_env: WorkflowEnvironment, make_harness: Any
) -> None:
    skip = {"actor": LEAD, "kind": "hierarchical", "reason": "outage", "to_tier": 3}
    async with make_harness(ts_env, None) as h:
        tickets = h.tickets
        t = ticket()
        await tickets.open(t)
        with pytest.raises(ActionRefused, match="to_tier: skip-level escalation to tier 3 is not allowed; next is 2"):
            await tickets.act(t.ticket_id, "escalate", skip)
        assert (await tickets.status(t.ticket_id)).tier == 1
    doc = policy_doc()
    doc["guards"]["allow_skip_level"] = True
    async with make_harness(ts_env, None, doc) as h:
        tickets = h.tickets
        t = ticket()
        await tickets.open(t)
        status = await tickets.act(t.ticket_id, "escalate", skip)
    assert status.tier == 3 and status.queue == "support-t3"


async def test_department_ping_pong_is_capped(ts_env: WorkflowEnvironment, make_harness: Any) -> None:
    async with make_harness(ts_env, None) as h:
        tickets = h.tickets
        t = ticket()
        await tickets.open(t)

        def to(dept: str) -> dict[str, Any]:
            return {"actor": LEAD, "kind": "functional", "department": dept, "reason": f"for {dept}"}

        await tickets.act(t.ticket_id, "escalate", to("billing"))
        back = await tickets.act(t.ticket_id, "escalate", to("support"))  # one bounce: the policy's maximum
        assert back.department == "support"
        with pytest.raises(ActionRefused, match=r"department: the ticket would bounce back to 'billing' \(bounces 2"):
            await tickets.act(t.ticket_id, "escalate", to("billing"))
        onward = await tickets.act(t.ticket_id, "escalate", to("technical"))  # a new department is fine
    assert onward.department == "technical" and onward.escalation_count == 3


async def test_reassign_scope_by_role(ts_env: WorkflowEnvironment, make_harness: Any) -> None:
    async with make_harness(ts_env, None) as h:
        tickets = h.tickets
        t = ticket()
        await tickets.open(t)
        with pytest.raises(ActionRefused, match="to_queue: role agent may reassign only within queue 'support-t1'"):
            await tickets.act(t.ticket_id, "reassign", {"actor": AGENT, "to_queue": "billing-t1"})
        mine = await tickets.act(t.ticket_id, "reassign", {"actor": AGENT, "to_agent": "bob", "reason": "shift"})
        assert (mine.assignee, mine.queue) == ("bob", "support-t1")
        moved = await tickets.act(
            t.ticket_id, "reassign", {"actor": LEAD, "to_queue": "billing-t1", "reason": "billing question"}
        )
    assert (moved.queue, moved.department, moved.assignee) == ("billing-t1", "billing", None)


async def test_min_time_in_tier_waived_for_urgent(ts_env: WorkflowEnvironment, make_harness: Any) -> None:
    async with make_harness(ts_env, None) as h:
        tickets = h.tickets
        t = ticket(priority="urgent")
        await tickets.open(t)
        status = await tickets.act(
            t.ticket_id, "escalate", {"actor": AGENT, "kind": "hierarchical", "reason": "angry customer"}
        )
        await tickets.act(t.ticket_id, "acknowledge", {"actor": {"id": "tia", "role": "agent", "tier": 2}})
        await ts_env.sleep(timedelta(minutes=1))
    assert status.tier == 2
