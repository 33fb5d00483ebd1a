"""Every route x every caller role, on real uvicorn and a real dev server: 403 where the role does
not belong to the route, 2xx where it does (with a body valid for that role and a ticket in the
state the action needs).

The routes come from the API's own OpenAPI document (`x-roles`), so a route added later is in the
matrix at once: a GET route is checked both ways without help; any other route needs a case here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.apiserver import Api, new_ticket, running_api
from tests.conftest import policy_doc

ROLES = ("agent", "lead", "manager", "system", "auditor")
KEY_OF = {"agent": "ann", "lead": "lee", "manager": "max", "system": "helpdesk", "auditor": "aud"}
MUST_BE_PUBLIC = {("GET", "/healthz"), ("POST", "/webhooks/helpdesk")}


@pytest.fixture(scope="module")
async def api(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    doc = policy_doc()
    # Every role may do everything the policy governs, so that a 2xx depends on the route alone;
    # only authority limits differ (an approval requested by `system`, limit 0, waits for a decision).
    doc["permissions"] = {
        "agent": {"reassign": "any", "escalate": True, "authority_limit": 50, "decide_approvals": True},
        "lead": {"reassign": "any", "escalate": True, "authority_limit": 500, "decide_approvals": True},
        "manager": {"reassign": "any", "escalate": True, "authority_limit": 10000, "decide_approvals": True},
        "system": {"reassign": "any", "escalate": True, "authority_limit": 0, "decide_approvals": True},
    }
    keys = {KEY_OF[role]: [role] for role in ROLES}
    async with running_api(dev_env.client, tmp_path_factory.mktemp("roles"), keys, policy=doc) as running:
        running.receiver.status_for_type["ticket.self_service"] = 410  # its notice fails at once
        yield running


def actor(role: str) -> dict[str, str]:
    return {"id": KEY_OF[role], "role": role}


async def open_ticket(http: httpx.AsyncClient, **fields: Any) -> str:
    body = new_ticket(**fields)
    answer = await http.post("/tickets", json=body)
    assert answer.status_code == 201, answer.text
    return str(body["ticket_id"])


async def act(http: httpx.AsyncClient, tid: str, action: str, body: dict[str, Any]) -> None:
    answer = await http.post(f"/tickets/{tid}/{action}", json=body)
    assert answer.status_code == 200, (action, answer.text)


async def wait_failed_notice(http: httpx.AsyncClient, tid: str) -> None:
    for _ in range(300):
        status = (await http.get(f"/tickets/{tid}")).json()
        if any(n["status"] == "failed" for n in status.get("undelivered", [])):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"ticket {tid}: its self-service notice never failed")


Setup = Callable[[httpx.AsyncClient, httpx.AsyncClient], Awaitable[str]]


def plain(**fields: Any) -> Setup:
    async def setup(system: httpx.AsyncClient, reader: httpx.AsyncClient) -> str:
        return await open_ticket(system, **fields)

    return setup


def after(action: str, body: dict[str, Any], **fields: Any) -> Setup:
    async def setup(system: httpx.AsyncClient, reader: httpx.AsyncClient) -> str:
        tid = await open_ticket(system, **fields)
        await act(system, tid, action, body)
        return tid

    return setup


def with_failed_notice() -> Setup:
    async def setup(system: httpx.AsyncClient, reader: httpx.AsyncClient) -> str:
        tid = await open_ticket(system, category="how-to")
        await wait_failed_notice(reader, tid)
        return tid

    return setup


def with_pending_approval() -> Setup:
    async def setup(system: httpx.AsyncClient, reader: httpx.AsyncClient) -> str:
        tid = await open_ticket(system)
        request = {"actor": actor("system"), "kind": "refund", "amount": 40, "reason": "double charge"}
        await act(system, tid, "request_approval", request)
        return tid

    return setup


SYS = actor("system")
# action -> (ticket set-up, body for a role)
ACTION_CASES: dict[str, tuple[Setup, Callable[[str], dict[str, Any]]]] = {
    "acknowledge": (plain(), lambda r: {"actor": actor(r)}),
    "reassign": (plain(), lambda r: {"actor": actor(r), "to_agent": "zed"}),
    "escalate": (plain(priority="urgent"), lambda r: {"actor": actor(r), "kind": "hierarchical", "reason": "stuck"}),
    "pending_customer": (plain(), lambda r: {"actor": actor(r), "note": "asked for logs"}),
    "customer_replied": (after("pending_customer", {"actor": SYS}), lambda r: {"note": "logs attached"}),
    "change_priority": (plain(), lambda r: {"actor": actor(r), "priority": "high", "reason": "vip"}),
    "resolve": (plain(), lambda r: {"actor": actor(r), "resolution": "fixed"}),
    "reopen": (after("resolve", {"actor": SYS, "resolution": "x"}), lambda r: {"actor": actor(r), "reason": "back"}),
    "request_approval": (
        plain(),
        lambda r: {"actor": actor(r), "kind": "discount", "amount": 10, "reason": "goodwill"},
    ),
    "decide_approval": (with_pending_approval(), lambda r: {"actor": actor(r), "approval_id": "", "approved": True}),
    "redeliver": (with_failed_notice(), lambda r: {"actor": actor(r), "reason": "receiver fixed"}),
    "discard_notices": (with_failed_notice(), lambda r: {"actor": actor(r), "reason": "customer gone"}),
    "confirm_solved": (plain(category="how-to"), lambda r: {"note": "the article helped"}),
}
# Where the route serves the role but the policy cannot let it succeed: deciding an approval above
# the role's own authority limit (system's is 0 above, so that its requests wait for a decision).
POLICY_REFUSES = {("decide_approval", "system")}


async def test_every_route_answers_403_to_roles_it_does_not_serve_and_2xx_to_those_it_does(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as anon:
        spec = (await anon.get("/openapi.json")).json()
    assert set(spec["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    operations: list[tuple[str, str, list[str]]] = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            key = (method.upper(), path)
            if op.get("x-public"):  # holds no data and needs no key (docs/api.md, "Authentication")
                assert "x-roles" not in op, key
                continue
            assert key not in MUST_BE_PUBLIC, key
            assert "x-roles" in op, f"{method.upper()} {path} declares no roles (openapi_extra x-roles)"
            assert op.get("security"), f"{method.upper()} {path} declares no security scheme"
            operations.append((method.upper(), path, op["x-roles"]))

    clients = {role: api.client(KEY_OF[role]) for role in ROLES}
    system, reader = clients["system"], clients["manager"]
    shared = await open_ticket(system)
    results: dict[tuple[str, str, str], tuple[int, str]] = {}
    gate = asyncio.Semaphore(8)

    async def one(method: str, path: str, role: str, serves: bool) -> None:
        async with gate:
            http = clients[role]
            action = path.rsplit("/", 1)[-1] if path.startswith("/tickets/{ticket_id}/") else None
            if method == "POST" and path == "/tickets":
                answer = await http.post("/tickets", json=new_ticket())
            elif method == "GET":
                answer = await http.get(path.replace("{ticket_id}", shared))
            elif action in ACTION_CASES:
                setup, body_for = ACTION_CASES[action]
                body_role = role if role in ("agent", "lead", "manager", "system") else "agent"
                body = body_for(body_role)
                if serves:
                    tid = await setup(system, reader)
                    if action == "decide_approval":
                        status = (await reader.get(f"/tickets/{tid}")).json()
                        body["approval_id"] = status["pending_approvals"][0]["id"]
                else:
                    tid = shared
                    if action == "decide_approval":
                        body["approval_id"] = "a-1"
                if "actor" in body and role == "auditor":
                    body["actor"] = {"id": KEY_OF[role], "role": "agent"}
                answer = await http.post(path.replace("{ticket_id}", tid), json=body)
            else:
                raise AssertionError(f"{method} {path}: no case in this test; add one to ACTION_CASES")
            results[(method, path, role)] = (answer.status_code, answer.text[:300])

    await asyncio.gather(
        *(one(method, path, role, role in serves) for method, path, serves in operations for role in ROLES)
    )
    for c in clients.values():
        await c.aclose()

    wrong = []
    for method, path, serves in operations:
        for role in ROLES:
            code, text = results[(method, path, role)]
            action = path.rsplit("/", 1)[-1]
            if role not in serves:
                ok = code == 403
            elif (action, role) in POLICY_REFUSES:
                ok = code == 422 and '"type":"action_rejected"' in text.replace(" ", "")
            else:
                ok = 200 <= code < 300
            if not ok:
                wrong.append(f"{method} {path} as {role}: {code} {text}")
    assert not wrong, "\n".join(wrong)
    served = sum(len(s) for _, _, s in operations)
    print(
        f"{len(operations)} routes x {len(ROLES)} roles: {served} served, {len(operations) * len(ROLES) - served} 403"
    )


async def test_roles_come_from_the_key_not_from_the_body(api: Api) -> None:
    async with api.client("aud") as auditor, api.client("helpdesk") as system:
        tid = await open_ticket(system)
        acting = await auditor.post(f"/tickets/{tid}/acknowledge", json={"actor": {"id": "aud", "role": "agent"}})
        opening = await auditor.post("/tickets", json=new_ticket())
        reading = await auditor.get(f"/tickets/{tid}")
        system_reading = await system.get(f"/tickets/{tid}")
        posing = await system.post(
            f"/tickets/{tid}/acknowledge", json={"actor": {"id": f"x{uuid.uuid4().hex[:4]}", "role": "lead"}}
        )
    assert acting.status_code == opening.status_code == 403
    assert reading.status_code == 200 and system_reading.status_code == 403
    assert posing.status_code == 403 and "may not act as role 'lead'" in posing.text
