"""Replay the committed histories against today's workflow code: a change that would break running
tickets fails here (and so fails CI). Re-record them with `python -m tests.histories.record`."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from cli.replay import load_history, replay_history
from workflows.models import Ticket, TicketSummary
from workflows.ticket import TicketEscalation

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_histories_to_replay() -> None:
    assert {p.stem for p in HISTORIES} >= {
        f"ticket-REC-{n}" for n in ("untouched_ladder", "acknowledged_paused_resolved", "self_service")
    }


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_committed_history_replays_on_current_code(path: Path) -> None:
    result = await replay_history(load_history(path))
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@workflow.defn(name="TicketEscalation", sandboxed=False)
class WaitsBeforeLoadingThePolicy(TicketEscalation):
    """A deliberately incompatible change: a new timer before the first activity."""

    @workflow.run
    async def run(self, ticket: Ticket) -> TicketSummary:
        await workflow.sleep(timedelta(seconds=5))
        return await super().run(ticket)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_an_incompatible_change_is_caught(path: Path) -> None:
    replayer = Replayer(workflows=[WaitsBeforeLoadingThePolicy], data_converter=pydantic_data_converter)
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
