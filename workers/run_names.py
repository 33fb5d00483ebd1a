"""Which workflow a run id belongs to, so that the Temporal core's own log lines name the ticket.

The core (Rust) logs a workflow task it fails, or a completion the server refuses, with the run id
alone; an operator greps by ticket. Each workflow run, when the worker starts it (or loads it into
its cache again), tells this module its workflow id through an extern function, the sandbox's door
for such calls; the log renderer (`workers/logs.py`) adds `workflow_id` and `ticket_id` to any line
that has a `run_id` and no workflow id. Nothing here is read by a workflow: no decision changes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

EXTERN = "escalations_run_name"
LIMIT = 100_000  # run ids remembered, the oldest forgotten first (about 10 MiB at most)
_RUNS: OrderedDict[str, str] = OrderedDict()


def remember(run_id: str, workflow_id: str) -> None:
    _RUNS[run_id] = workflow_id
    _RUNS.move_to_end(run_id)
    while len(_RUNS) > LIMIT:
        _RUNS.popitem(last=False)


def workflow_of(run_id: object) -> str | None:
    return _RUNS.get(run_id) if isinstance(run_id, str) else None


class _NameTheRun(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        info = workflow.info()
        named = workflow.extern_functions().get(EXTERN)
        if named is not None:
            named(info.run_id, info.workflow_id)
        return await super().execute_workflow(input)


class RunNames(Interceptor):
    """The worker interceptor that fills the map (`Worker(interceptors=[RunNames()])`)."""

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        input.unsafe_extern_functions[EXTERN] = remember
        return _NameTheRun
