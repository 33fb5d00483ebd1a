"""Every exit code of the command line and its one-line message, against a real dev server.

0 ok; 1 Temporal unreachable; 2 bad input (a missing file too); 3 refused by the ticket; 4 no such
ticket. Errors are one line on stderr and nothing on stdout; `--json` output parses; a closed pipe
is silent; the search examples in `escalations search --help` are queries the server accepts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from temporalio.testing import WorkflowEnvironment

from api.client import TicketClient
from cli.tickets import SEARCH_HELP
from tests.conftest import TEST_CODEC_KEYS
from tests.helpers import ticket
from tests.ports import free_port
from workflows.models import workflow_id_for

AGENT = '{"actor": {"id": "ann", "role": "agent"}}'


def environ(address: str, task_queue: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_") or k == "ESCALATIONS_DATA_DIR"}
    return env | {
        "ESCALATIONS_TEMPORAL_ADDRESS": address,
        "ESCALATIONS_TASK_QUEUE": task_queue,
        "ESCALATIONS_CODEC_KEYS": TEST_CODEC_KEYS,  # the test servers' payloads are encrypted with it
    }


async def run_cli(env: dict[str, str], *args: str, stdout: Any = asyncio.subprocess.PIPE) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", *args, env=env, stdout=stdout, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, (out or b"").decode(), err.decode()


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


async def test_exit_codes_and_messages(dev_env: WorkflowEnvironment, make_harness: Any) -> None:
    async with make_harness(dev_env, None) as h:
        env = environ(dev_env.client.service_client.config.target_host, h.task_queue)
        t = ticket()
        code, out, err = await run_cli(env, "open", t.model_dump_json(exclude_none=True), "--json")
        assert (
            code == 0
            and err == ""
            and json.loads(out)
            == {
                "ticket_id": t.ticket_id,
                "workflow_id": workflow_id_for(t.ticket_id),
                "created": True,
            }
        )
        no_reason = '{"actor": {"id": "ann", "role": "agent"}, "kind": "hierarchical"}'
        cases: list[tuple[list[str], int, str]] = [
            (["status", "NOPE-404"], 4, "error: no such ticket: NOPE-404"),
            (["timeline", "NOPE-404"], 4, "error: no such ticket: NOPE-404"),
            (["act", "NOPE-404", "acknowledge", AGENT], 4, "error: no such ticket: NOPE-404"),
            (["replay", "NOPE-404"], 4, "error: no such ticket: NOPE-404"),
            (["act", t.ticket_id, "escalate", no_reason], 3, "error: escalate refused: reason: a reason is required"),
            (["open", "@missing.json"], 2, "error: ticket: no such file: missing.json"),
            (["open", "{not json"], 2, "error: ticket: not valid JSON: "),
            (
                ["open", '{"ticket_id": "x", "customer": {"id": "c"}}'],
                2,
                "error: invalid ticket: subject: Field required",
            ),
            (["open"], 2, "error: Missing argument 'ticket'."),
            (["act", t.ticket_id, "fly", "{}"], 2, "error: action: unknown action 'fly' (one of: acknowledge,"),
            (["act", t.ticket_id, "acknowledge", '{"actor": {"id": "ann"}}'], 2, "actor.role: Field required"),
            (["act", t.ticket_id, "acknowledge", "@missing.json"], 2, "error: payload: no such file: missing.json"),
            (["search", "TicketTier = 2 AND SlaBreached"], 2, "error: query: "),
            (["search", "--limit", "lots"], 2, "error: Invalid value for '--limit'"),
            (["timeline", t.ticket_id, "--format", "pdf"], 2, "error: Invalid value for '--format'"),
            (["policy", "check", "missing.yaml"], 2, "error: no such file: missing.yaml"),
            (
                ["policy", "simulate", "config/policies/default.yaml", "--ticket", "@missing.json"],
                2,
                "error: --ticket: no such file: missing.json",
            ),
            (["replay", "--history", "missing.json"], 2, "error: --history: no such file: missing.json"),
            (["api-key", "ann", "boss"], 2, "error: roles: unknown role 'boss'"),
            (["run", "--policy", "missing.yaml"], 2, "error: --policy: no such file: missing.yaml"),
            (["bogus"], 2, "error: No such command 'bogus'."),
            (["status", ""], 2, "error: Invalid value for 'ticket_id': a ticket id is needed"),
            (["status", "x" * 201], 2, "error: Invalid value for 'ticket_id': at most 200 characters"),
            (["open", "@/"], 2, "error: ticket: / is a directory, not a JSON file"),
            # One rule with POST /tickets: a future opening (its clocks would not run) and unknown fields.
            (
                [
                    "open",
                    '{"ticket_id": "F-1", "subject": "s", "customer": {"id": "c"}, "opened_at": "2199-01-01T00:00Z"}',
                ],
                2,
                "error: invalid ticket: opened_at: Value error, must not be in the future",
            ),
            (["open", '{"ticket_id": "F-2", "subject": "s", "customer": {"id": "c"}, "colour": "red"}'], 2, "colour"),
        ]
        results = await asyncio.gather(*(run_cli(env, *args) for args, _, _ in cases))
        for (args, expected_code, message), (code, out, err) in zip(cases, results, strict=True):
            assert code == expected_code, (args, code, out, err)
            assert message in one_error_line(err), (args, err)
            assert out == "", (args, out)

        # A ticket whose workflow closed before it ever ran cannot answer: exit 3, and the line says why.
        closed = ticket()
        await TicketClient(h.client, "no-worker-polls-this").open(closed)
        await h.tickets.handle(closed.ticket_id).terminate("test: closed ticket")
        code, out, err = await run_cli(env, "status", closed.ticket_id)
        assert code == 3 and out == ""
        assert one_error_line(err) == (
            f"error: ticket {closed.ticket_id} cannot answer: its workflow is terminated "
            f"(history: escalations timeline {closed.ticket_id})"
        )


async def test_temporal_unreachable_is_exit_1_in_one_line() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = environ(address, "nowhere")
    opening = '{"ticket_id": "T-1", "subject": "s", "customer": {"id": "c"}}'
    commands = [["status", "T-1"], ["open", opening], ["search", ""], ["timeline", "T-1"],
                ["act", "T-1", "acknowledge", AGENT], ["replay", "T-1"]]  # fmt: skip
    for (code, out, err), args in zip(
        await asyncio.gather(*(run_cli(env, *c) for c in commands)), commands, strict=True
    ):
        assert code == 1 and out == "", (args, code, out, err)
        assert one_error_line(err) == (
            f"error: cannot reach Temporal at {address} (connection refused); is `./dev run` running?"
        ), args


async def test_json_plain_text_and_help_examples(dev_env: WorkflowEnvironment, make_harness: Any) -> None:
    async with make_harness(dev_env, None) as h:
        env = environ(dev_env.client.service_client.config.target_host, h.task_queue)
        t = ticket(category="billing")
        await h.tickets.open(t)
        code, out, _ = await run_cli(env, "act", t.ticket_id, "acknowledge", AGENT, "--json")
        assert code == 0 and json.loads(out)["state"] == "acknowledged"

        code, out, _ = await run_cli(env, "status", t.ticket_id, "--json")
        status = json.loads(out)
        assert code == 0 and status["ticket_id"] == t.ticket_id and status["assignee"] == "ann"

        # Piped, without --json: plain text, tab-separated, no colour codes.
        code, out, _ = await run_cli(env, "status", t.ticket_id)
        assert code == 0 and "\x1b" not in out
        assert "state\tacknowledged" in out.splitlines() and "assignee\tann" in out.splitlines()
        assert out.splitlines()[0] == f"ticket_id\t{t.ticket_id}"

        # Every query the help suggests is accepted by the server; --json output parses.
        examples = re.findall(r'escalations search "([^"]+)"', SEARCH_HELP)
        assert len(examples) >= 3
        help_code, help_text, _ = await run_cli(env, "search", "--help")
        assert help_code == 0 and "TicketTier = 2 AND SlaBreached = true" in help_text
        for query in examples:
            code, out, err = await run_cli(env, "search", query, "--json")
            assert code == 0, (query, err)
            assert isinstance(json.loads(out), list)
        code, out, _ = await run_cli(env, "search", f"TicketDepartment = '{status['department']}'", "--json")
        assert t.ticket_id in [row["ticket"] for row in json.loads(out)]

        # --json on the other commands that print a result.
        checks: list[tuple[list[str], Callable[[Any], Any]]] = [
            (["policy", "check", "config/policies/default.yaml", "--json"], lambda d: d["valid"] is True),
            (["api-key", "ann", "agent", "--json"], lambda d: d["key"] and d["settings_entry"].startswith("ann:")),
            (["timeline", t.ticket_id, "--json"], lambda d: d["ticket_id"] == t.ticket_id and d["events"]),
            (["replay", t.ticket_id, "--json"], lambda d: d["replays"] is True and d["events"] > 0),
        ]
        for (args, ok), (code, out, err) in zip(
            checks, await asyncio.gather(*(run_cli(env, *args) for args, _ in checks)), strict=True
        ):
            assert code == 0 and ok(json.loads(out)), (args, out, err)

        # A reader that went away (`| head`) is not an error worth a traceback: silent, 141 like SIGPIPE.
        for args in (["status", t.ticket_id], ["timeline", t.ticket_id, "--format", "csv"], ["--help"]):
            read_end, write_end = os.pipe()
            os.close(read_end)
            try:
                code, _, err = await run_cli(env, *args, stdout=write_end)
            finally:
                os.close(write_end)
            assert (code, err) == (141, ""), (args, code, err)
