"""A policy file the worker refuses (its endpoint URL points at a host outside
ESCALATIONS_ALLOWED_ENDPOINT_HOSTS) must not leave new tickets waiting unseen: `escalations worker`
refuses to start with it (exit 2, naming the field), and a worker that has no valid policy counts
every ticket that waits for one (`escalations_policy_invalid_total`, alert `PolicyFileInvalid`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_CODEC_KEYS, make_settings, policy_doc, time_skipping_with_metrics
from tests.helpers import ticket
from workers.connection import register_search_attributes
from workers.worker import build_worker
from workflows.models import workflow_id_for

OUTSIDE = "http://hooks.example.org/events"  # not in the default allow-list (127.0.0.1, localhost, ::1)


def refused_policy(tmp_path: Path) -> Path:
    doc = policy_doc()
    doc["notifications"]["endpoints"] = [{"name": "platform", "url": OUTSIDE}]
    path = tmp_path / "outside.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_worker_process_refuses_to_start_with_such_a_policy(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_") or k == "ESCALATIONS_DATA_DIR"} | {
        "ESCALATIONS_POLICY_PATH": str(refused_policy(tmp_path)),
        "ESCALATIONS_CODEC_KEYS": TEST_CODEC_KEYS,
        "ESCALATIONS_TEMPORAL_ADDRESS": "127.0.0.1:1",  # never reached: it stops before connecting
        "ESCALATIONS_METRICS_ADDRESS": "",
        "ESCALATIONS_WORKER_HEALTH_PORT": "0",
        "ESCALATIONS_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "notifications.endpoints.platform.url" in done.stderr


async def test_tickets_waiting_for_a_valid_policy_are_counted(tmp_path: Path) -> None:
    env, metrics = await time_skipping_with_metrics()

    def invalid() -> float:
        text = httpx.get(metrics, timeout=5).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "escalations_policy_invalid_total"
        )

    counted = 0.0
    try:
        await register_search_attributes(env.client, "default")
        settings = make_settings(refused_policy(tmp_path), None)
        task_queue = f"tq-{uuid.uuid4().hex[:8]}"
        async with httpx.AsyncClient(timeout=5) as http, build_worker(env.client, settings, http, task_queue):
            t = ticket()
            await env.client.start_workflow(
                "TicketEscalation", t, id=workflow_id_for(t.ticket_id), task_queue=task_queue
            )
            for _ in range(60):
                counted = invalid()
                if counted:
                    break
                await asyncio.sleep(0.5)
    finally:
        await env.shutdown()
    assert counted >= 1
