"""Hostile bodies through `POST /webhooks/{name}` of each helpdesk, on the real API: signed (so they
pass verification) but of every wrong shape, deeply nested, with lone surrogates or NaN; and unsigned
garbage. Each gets 401 or 422 with a reason, never a 500, and no ticket is opened."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from config.settings import EndpointSettings
from tests.apiserver import Api, running_api
from tests.conftest import policy_doc
from tests.test_connector_freshdesk import SECRET as FD_SECRET
from tests.test_connector_freshdesk import rendered
from tests.test_connector_jira import SECRET as JIRA_SECRET
from tests.test_connector_jira import body as jira_body
from tests.test_connector_jira import signed as jira_signed
from tests.test_connector_zendesk import CREATED, SECRET
from tests.test_connector_zendesk import signed as zendesk_signed


@pytest.fixture(scope="module")
async def api(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    doc = policy_doc(
        helpdesks={"zendesk": {"kind": "zendesk"}, "jira": {"kind": "jira"}, "freshdesk": {"kind": "freshdesk"}}
    )
    creds = {
        "zendesk": {"url": "http://127.0.0.1:9", "username": "a@b.c", "token": "t", "secret": SECRET},
        "jira": {"url": "http://127.0.0.1:9", "username": "a@b.c", "token": "t", "secret": JIRA_SECRET},
        "freshdesk": {"url": "http://127.0.0.1:9", "token": "t", "secret": FD_SECRET},
    }
    endpoints = {name: EndpointSettings.model_validate(c) for name, c in creds.items()}
    async with running_api(
        dev_env.client, tmp_path_factory.mktemp("hostile"), {}, policy=doc, endpoints=endpoints, worker=False
    ) as running:
        yield running


def zendesk(**detail: Any) -> bytes:
    body = copy.deepcopy(CREATED)
    body["detail"] |= detail
    return json.dumps(body).encode()


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


ZENDESK_BODIES = [
    zendesk(tags=5),
    zendesk(id={"x": 1}),
    zendesk(subject=None),
    zendesk(via=[1, 2]),
    zendesk(created_at="yesterday"),
    json.dumps(CREATED | {"type": "\ud800"}).encode("utf-8", "surrogatepass"),
    json.dumps(CREATED | {"id": "\ud800"}).encode("utf-8", "surrogatepass"),
    json.dumps(CREATED | {"id": "x" * 5000}).encode(),
    nested(5000),
    b"[]",
    b"null",
    b'{"type": "zen:event-type:ticket.created", "detail": 5}',
]
JIRA_BODIES = [
    jira_body("jira:issue_created", labels=5),
    jira_body("jira:issue_updated", items=5),  # type: ignore[arg-type]
    jira_body("jira:issue_updated", user={"accountId": ["x"]}, items=[]),
    b'{"timestamp": NaN, "webhookEvent": "jira:issue_created"}',
    b'{"timestamp": Infinity, "webhookEvent": "jira:issue_created"}',
    nested(5000),
]
FRESHDESK_BODIES = [nested(5000), b"[1]", rendered("{ticket_action:created}").replace(b'"35436"', b"[35436]")]


async def test_hostile_bodies_get_a_reason_never_a_500(api: Api) -> None:
    async with api.client(None) as http:
        answers: list[tuple[str, int, str]] = []
        for n, raw in enumerate(ZENDESK_BODIES):
            headers = zendesk_signed(raw)[1]
            r = await http.post("/webhooks/zendesk", content=raw, headers=headers)
            answers.append((f"zendesk[{n}]", r.status_code, r.text))
        for n, raw in enumerate(JIRA_BODIES):
            r = await http.post("/webhooks/jira", content=raw, headers=jira_signed(raw, ident=f"hostile-{n}"))
            answers.append((f"jira[{n}]", r.status_code, r.text))
        for n, raw in enumerate(FRESHDESK_BODIES):
            r = await http.post("/webhooks/freshdesk", content=raw, headers={"X-Escalations-Secret": FD_SECRET})
            answers.append((f"freshdesk[{n}]", r.status_code, r.text))
        for name in ("zendesk", "jira", "freshdesk", "nope", "pagerduty"):  # unsigned garbage
            r = await http.post(f"/webhooks/{name}", content=b"\x00\xff garbage")
            answers.append((f"{name} unsigned", r.status_code, r.text))
        wrong = [(where, code, text[:200]) for where, code, text in answers if code not in (401, 404, 422)]
        assert wrong == [], wrong
        assert all(json.loads(text).get("detail") for _, _, text in answers)  # each says why (none was a 202)
