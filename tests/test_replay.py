"""Replay the committed histories against today's workflow code: a change that would break running
tickets fails here (and so fails CI). Re-record them with `python -m tests.histories.record`."""

from __future__ import annotations

import base64
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.worker import Replayer

from cli.replay import load_history, replay_history
from tests.conftest import TEST_CONVERTER
from tests.histories.record import SCENARIOS
from workflows.models import State, Ticket, TicketSummary
from workflows.ticket import TicketEscalation

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_histories_to_replay() -> None:
    assert {p.stem for p in HISTORIES} >= {f"ticket-REC-{n}" for n in SCENARIOS} | {
        "ticket-REC-continued_as_new",
        "ticket-REC-continued_as_new__run2",
        "ticket-REC-policy_broken_at_opening",
    }


def test_the_corpus_covers_every_state_and_continue_as_new() -> None:
    """Every state a ticket can be in was recorded (read from its TicketState upserts), and so was
    a continued run: a change that breaks any of them fails the replay below."""
    states: set[str] = set()
    continued = 0
    for path in HISTORIES:
        for event in json.loads(path.read_text())["events"]:
            upsert = event.get("upsertWorkflowSearchAttributesEventAttributes")
            if upsert and "TicketState" in upsert["searchAttributes"]["indexedFields"]:
                raw = upsert["searchAttributes"]["indexedFields"]["TicketState"]["data"]
                states.add(json.loads(base64.b64decode(raw)))
            continued += "workflowExecutionContinuedAsNewEventAttributes" in event
    assert states == {s.value for s in State}
    assert continued >= 1


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_committed_history_replays_on_current_code(path: Path) -> None:
    # With the encrypting converter: histories recorded before encryption pass through its codec.
    result = await replay_history(load_history(path), TEST_CONVERTER)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@workflow.defn(name="TicketEscalation", sandboxed=False)
class WaitsBeforeLoadingThePolicy(TicketEscalation):
    """A deliberately incompatible change: a new timer before the first activity."""

    @workflow.run
    async def run(self, ticket: Ticket | dict[str, Any], carried: Any = None) -> TicketSummary:
        await workflow.sleep(timedelta(seconds=5))
        return await super().run(ticket, carried)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_an_incompatible_change_is_caught(path: Path) -> None:
    replayer = Replayer(workflows=[WaitsBeforeLoadingThePolicy], data_converter=TEST_CONVERTER)
    result = await replayer.replay_workflow(load_history(path), raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()


def test_replay_command_says_ok_for_a_saved_history() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "replay", "--history", str(HISTORIES[0])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the current code makes exactly the recorded decisions" in done.stdout
