"""What an activity counts: each HTTP try of a notice (result class and duration), by endpoint name.

`activity.metric_meter()` adds `activity_type`, `workflow_type`, `namespace` and `task_queue`. The
endpoint label is the policy's endpoint name (bounded like every label, see `workflows/metrics.py`),
never its URL. A metric never fails an activity: errors here are swallowed.
"""

from __future__ import annotations

import contextlib
import time

from temporalio import activity

from workflows import metrics as names


def result_of(status_code: int) -> str:
    """A bounded result class: 2xx/3xx/4xx/5xx, with 408 and 429 apart (they are retried)."""
    if status_code in (408, 429):
        return str(status_code)
    return f"{status_code // 100}xx" if 100 <= status_code < 600 else "other"


def record_try(endpoint: str, result: str, started: float) -> None:
    """One try of a notice: `result` is `result_of(code)` (SMTP 250: 2xx), `unreachable`, `failed` or
    `rejected` (email, chat: retried or final); `started` from `time.monotonic()`."""
    with contextlib.suppress(Exception):  # outside an activity (a direct call in a test) or a metric bug
        meter = activity.metric_meter()
        endpoint = names.name(endpoint)
        meter.create_counter(names.DELIVERY_ATTEMPTS, names.DESCRIPTIONS[names.DELIVERY_ATTEMPTS]).add(
            1, {"endpoint": endpoint, "result": result}
        )
        meter.create_histogram_float(names.DELIVERY_DURATION, names.DESCRIPTIONS[names.DELIVERY_DURATION], "s").record(
            time.monotonic() - started, {"endpoint": endpoint}
        )
