"""`escalations receive`, the demo receiver, as a person runs it: one line for every event type the
contract lists (the ones about no single ticket included), a repeated webhook-id acknowledged once,
a forged one refused, a body it cannot read shown rather than crashing the receiver."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from activities.webhooks import sign_headers
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_dGVzdC1yZWNlaXZlLXNlY3JldC0zMi1ieXRlcy14eHh4eA=="


def contract_event_types() -> list[str]:
    """The `**Events**` entry of the README's contract section: every type the product sends."""
    text = (ROOT / "README.md").read_text()
    entry = text[text.index("- **Events**") :].split("\n- ", 1)[0]
    return re.findall(r"`([a-z_]+\.[a-z_]+)`", entry)


def event(kind: str, n: int) -> dict[str, object]:
    base: dict[str, object] = {
        "id": f"msg_r_{n}",
        "type": kind,
        "occurred_at": "2026-12-06T10:00:00+00:00",
        "recipients": [{"role": "department_head", "id": "bea.head"}],
        "rule": "ladders.resolution[1] (res-breach)",
        "reason": f"reason {n}",
    }
    if kind == "review.spike":  # about a department's day: no ticket, tier or priority
        return base | {
            "department": "billing",
            "day": "2026-12-05",
            "rule": "review.spike_check",
            "data": {"spikes": []},
        }
    return base | {
        "ticket_id": "T-1",
        "workflow_id": "ticket-T-1",
        "tier": 2,
        "department": "billing",
        "priority": "high",
    }


def post(url: str, webhook_id: str, body: str, secret: str = SECRET) -> int:
    headers = sign_headers(secret, webhook_id, body) | {"content-type": "application/json"}
    return httpx.post(url, content=body, headers=headers, timeout=5).status_code


def test_every_contract_event_type_prints_one_line_and_a_repeat_none() -> None:
    types = contract_event_types()
    assert {"sla.warning", "ticket.reassigned", "approval.requested", "review.spike"} <= set(types), types
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_") or k == "ESCALATIONS_DATA_DIR"}
    # No --port: the receiver listens where ESCALATIONS_WEBHOOK_URL points, as the service posts.
    env |= {"ESCALATIONS_WEBHOOK_SECRET": SECRET, "ESCALATIONS_WEBHOOK_URL": f"http://127.0.0.1:{port}/events"}
    receiver = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "receive"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert receiver.stderr is not None
        assert f"http://127.0.0.1:{port}/events" in receiver.stderr.readline().decode()
        url = f"http://127.0.0.1:{port}/events"
        for n, kind in enumerate(types):
            body = json.dumps(event(kind, n))
            assert post(url, f"msg_r_{n}", body) == 200
            assert post(url, f"msg_r_{n}", body) == 200  # a sender's retry: acknowledged, not printed again
        assert post(url, "msg_garbage", "[1, 2") == 200  # verified, unreadable: shown, not a crash
        assert post(url, "msg_forged", json.dumps(event("sla.warning", 99)), secret="whsec_" + "QUFB" * 8) == 401
        time.sleep(0.3)
    finally:
        receiver.terminate()
        out, err = receiver.communicate(timeout=10)
    lines = out.decode().splitlines()
    assert "Traceback" not in err.decode(), err.decode()
    printed = [line for line in lines if not line.startswith(("?", "REFUSED"))]
    assert [line.split()[1] for line in printed] == types, lines
    spike = next(line for line in printed if " review.spike " in line)
    assert "department billing day 2026-12-05" in spike and "to: bea.head" in spike
    assert "ticket T-1 tier 2 billing" in printed[0]
    assert sum(line.startswith("?  not JSON") for line in lines) == 1
    assert sum(line.startswith("REFUSED") for line in lines) == 1
