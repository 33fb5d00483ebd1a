"""The command-line client against a real dev server: drive a ticket without writing code."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from temporalio.testing import WorkflowEnvironment

from tests.conftest import TEST_CODEC_KEYS
from tests.helpers import ticket


async def cli(
    env: WorkflowEnvironment, task_queue: str, *args: str, extra_env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """`escalations <args>` in a child process against `env`: exit code, stdout, stderr."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_") or k == "ESCALATIONS_DATA_DIR"}
    environ |= {
        "ESCALATIONS_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "ESCALATIONS_TASK_QUEUE": task_queue,
        "ESCALATIONS_CODEC_KEYS": TEST_CODEC_KEYS,  # the test servers' payloads are encrypted with it
    } | (extra_env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_open_act_status_timeline_from_the_command_line(dev_env: WorkflowEnvironment, make_harness: Any) -> None:
    async with make_harness(dev_env, None) as h:
        t = ticket()
        code, out, _ = await cli(dev_env, h.task_queue, "open", t.model_dump_json(exclude_none=True), "--json")
        assert code == 0 and json.loads(out)["created"] is True

        code, _, err = await cli(dev_env, h.task_queue, "open", '{"ticket_id": "x", "customer": {"id": "c"}}')
        assert code == 2 and "subject: Field required" in err

        code, _, err = await cli(
            dev_env,
            h.task_queue,
            "act",
            t.ticket_id,
            "escalate",
            '{"actor": {"id": "ann", "role": "agent"}, "kind": "hierarchical"}',
        )
        assert code == 3 and "escalate refused: reason: a reason is required to escalate" in err

        code, _, err = await cli(dev_env, h.task_queue, "act", t.ticket_id, "acknowledge", '{"actor": {"id": "ann"}}')
        assert code == 2 and "actor.role: Field required" in err

        code, out, _ = await cli(
            dev_env,
            h.task_queue,
            "act",
            t.ticket_id,
            "acknowledge",
            '{"actor": {"id": "ann", "role": "agent"}}',
            "--json",
        )
        assert code == 0 and json.loads(out)["state"] == "acknowledged"

        code, out, _ = await cli(dev_env, h.task_queue, "status", t.ticket_id, "--json")
        status = json.loads(out)
        assert code == 0 and status["assignee"] == "ann" and status["clocks"][0]["state"] == "stopped"

        code, out, _ = await cli(dev_env, h.task_queue, "timeline", t.ticket_id, "--format", "csv")
        assert code == 0 and out.startswith("at,source,kind,actor,detail")
        assert ",workflow,acknowledged,agent:ann," in out and ",history,update_accepted,agent:ann," in out
