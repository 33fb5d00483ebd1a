"""`GET /tickets/{id}/timeline`: one row model for every source and format. `source=state` in JSON
holds the same normalized rows as its CSV and Markdown, and as the `workflow` rows of the default
(history) export; the OpenAPI document describes those rows. The workflow's raw model stays the
`timeline` query's (contract). Real uvicorn, real worker, dev server.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from api.client import TicketClient
from tests.apiserver import Api, new_ticket, running_api
from tests.test_audit_export import _md_cells, _parse_detail

KEYS = {"ann": ["agent"], "lee": ["agent", "lead"], "mia": ["auditor"], "helpdesk": ["system"]}
ROW_KEYS = {"at", "source", "event_id", "kind", "actor", "detail"}
PY_DURATION = re.compile(r"^(-?\d+ days?, )?\d+:\d{2}:\d{2}(\.\d+)?$")  # str(timedelta): never in a row


@pytest.fixture(scope="module")
async def api(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_api(dev_env.client, tmp_path_factory.mktemp("rows"), KEYS) as running:
        yield running


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _canonical(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


async def test_state_json_has_the_rows_of_every_other_format_and_source(api: Api, dev_env: WorkflowEnvironment) -> None:
    body = new_ticket()
    tid = body["ticket_id"]
    async with api.client("helpdesk") as http:
        assert (await http.post("/tickets", json=body)).status_code == 201
    async with api.client("ann") as http:
        ack = await http.post(f"/tickets/{tid}/acknowledge", json={"actor": {"id": "ann", "role": "agent"}})
        assert ack.status_code == 200, ack.text
    async with api.client("lee") as http:
        escalate = {"actor": {"id": "lee", "role": "lead"}, "kind": "hierarchical", "reason": "needs tier 2"}
        assert (await http.post(f"/tickets/{tid}/escalate", json=escalate)).status_code == 200
        refused = await http.post(
            f"/tickets/{tid}/reopen", json={"actor": {"id": "lee", "role": "lead"}, "reason": "x"}
        )
        assert refused.status_code == 409  # recorded by the ticket: an action_rejected row

    async with api.client("mia") as http:
        state = await http.get(f"/tickets/{tid}/timeline", params={"source": "state", "format": "json"})
        state_csv = await http.get(f"/tickets/{tid}/timeline", params={"source": "state", "format": "csv"})
        state_md = await http.get(f"/tickets/{tid}/timeline", params={"source": "state", "format": "md"})
        history = await http.get(f"/tickets/{tid}/timeline", params={"format": "json"})
        schema = (await http.get("/openapi.json")).json()
    raw = await TicketClient(dev_env.client, api.settings.task_queue).timeline(tid)

    assert state.status_code == 200 and state.headers["X-Timeline-Source"] == "state"
    doc = state.json()
    assert set(doc) == {"ticket_id", "read_from", "events"} and doc["read_from"] == "state"
    rows = doc["events"]
    kinds = [r["kind"] for r in rows]
    assert {"escalated", "action_rejected"} <= set(kinds), kinds
    assert len(rows) == len(raw.events)  # every row of the workflow's own account, none added
    for row in rows:  # the normalized row model (api/export/normalize.py normalize_entry)
        assert set(row) == ROW_KEYS and row["source"] == "workflow" and row["event_id"] is None
        assert row["at"].endswith("Z") and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row["at"])
        assert row["actor"] and ":" in row["actor"]  # never empty: automatic rows are system:escalation-policy
        assert None not in row["detail"].values()
        assert not any(PY_DURATION.match(s) for s in _strings(row["detail"])), row
    assert any(r["actor"] == "system:escalation-policy" for r in rows)
    assert any(r["actor"] == "lead:lee" and r["kind"] == "escalated" for r in rows)

    # The same rows, value for value and in the same order, in CSV and Markdown.
    table = list(csv.reader(io.StringIO(state_csv.text)))
    assert table[0] == ["at", "source", "kind", "actor", "detail"] and len(table) - 1 == len(rows)
    lines = state_md.text.splitlines()
    start = lines.index("| at (UTC) | source | event | actor | detail |") + 2
    md_rows = [_md_cells(line) for line in lines[start:]]
    assert len(md_rows) == len(rows)
    for row, cells, md in zip(rows, table[1:], md_rows, strict=True):
        plain = [row["at"], row["source"], row["kind"], row["actor"]]
        assert cells[:4] == md[:4] == plain
        assert json.loads(cells[4]) == _parse_detail(md[4]) == row["detail"]

    # And the same as the `workflow` rows of the default export (which merges them into the history).
    merged = history.json()
    assert merged["read_from"] == "history"
    assert _canonical([r for r in merged["events"] if r["source"] == "workflow"]) == _canonical(rows)
    assert all(set(r) == ROW_KEYS for r in merged["events"])

    # The OpenAPI document describes these rows (not the workflow's raw model).
    route = schema["paths"]["/tickets/{ticket_id}/timeline"]["get"]
    ref = route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    model = schema["components"]["schemas"][ref]
    assert {"ticket_id", "read_from", "events"} <= set(model["required"])
    row_ref = model["properties"]["events"]["items"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][row_ref]["properties"]) == ROW_KEYS
