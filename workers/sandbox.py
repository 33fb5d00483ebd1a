"""The workflow sandbox, with the project's deterministic modules passed through on purpose.

The sandbox re-imports every module a workflow file imports, for every workflow run, unless the
module is passed through. The workflow files (`workflows/ticket.py`, `digest.py`, `review_spike.py`)
stay inside it, so it polices what they do; the modules they build on are pure (decisions, models,
the policy schema) and loaded once per worker: re-executing them per ticket cost about 28 ms of
the worker's event loop and 345 KiB per open ticket. Those modules hold no mutable state that a
decision reads, use no clock, randomness or I/O; `tests/test_sandbox.py` checks they stay loaded once.
"""

from __future__ import annotations

from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# Whole packages by prefix; of `workflows`, each module but the workflow files themselves.
DETERMINISTIC_MODULES: tuple[str, ...] = (
    "config",
    "workflows.action_handlers",
    "workflows.activity_interfaces",
    "workflows.clock",
    "workflows.decision_types",
    "workflows.decisions",
    "workflows.draft",
    "workflows.durations",
    "workflows.guards",
    "workflows.messages",
    "workflows.metrics",
    "workflows.models",
    "workflows.notices",
    "workflows.outbox",
    "workflows.recording",
    "workflows.review_messages",
    "workflows.routing",
    "workflows.search_attributes",
    "workflows.sla",
    "workflows.state",
    "workflows.state_changes",
    "workflows.summary",
    "workflows.ticket_core",
    "workflows.ticket_effects",
    "workflows.ticket_handlers",
    "workflows.ticket_store_sync",
    "workflows.ticket_views",
    "workflows.timers",
    "workflows.transitions",
)
WORKFLOW_FILES: tuple[str, ...] = ("workflows.ticket", "workflows.digest", "workflows.review_spike")


def sandboxed_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*DETERMINISTIC_MODULES)
    )


def workflow_runner(sandboxed: bool = True) -> WorkflowRunner:
    """The runner for workers and replayers: sandboxed (the default) or not (`workflow_sandbox`)."""
    return sandboxed_runner() if sandboxed else UnsandboxedWorkflowRunner()
