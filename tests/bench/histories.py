"""Per-lifecycle counts read from workflow histories: what the server stores and works through.

Counted generically from event types and marker names, so the figures stay right when the ticket
workflow changes (a local activity made a regular one, fewer upserts, a continue-as-new).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.message import Message
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

PAYLOAD = "temporal.api.common.v1.Payload"
COLUMNS = (
    ("events", "events"),
    ("wf tasks", "WORKFLOW_TASK_COMPLETED"),
    ("activities", "ACTIVITY_TASK_SCHEDULED"),
    ("local acts", "local acts"),
    ("timers", "TIMER_STARTED"),
    ("upserts", "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"),
    ("markers", "MARKER_RECORDED"),
    ("runs", "runs"),
    ("payload KB", "payload bytes"),
    ("history KB", "history bytes"),
)


def payload_bytes(message: Message) -> int:
    """Byte size of every `Payload` in a protobuf message, found by walking its fields."""
    if message.DESCRIPTOR.full_name == PAYLOAD:
        return message.ByteSize()
    total = 0
    for desc, value in message.ListFields():
        if desc.message_type is None:
            continue
        if isinstance(value, Message):
            items: list[object] = [value]
        elif hasattr(value, "values"):  # a map field (its values may be messages)
            items = list(value.values())
        else:  # a repeated field
            items = list(value)
        total += sum(payload_bytes(item) for item in items if isinstance(item, Message))
    return total


def event_name(event: HistoryEvent) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")


@dataclass
class Counts:
    """Sums over a sample of lifecycles; `per` divides by their number."""

    lifecycles: int = 0
    totals: Counter[str] = field(default_factory=Counter)

    def add(self, events: Sequence[HistoryEvent], runs: int) -> None:
        self.lifecycles += 1
        self.totals["runs"] += runs
        self.totals["events"] += len(events)
        for event in events:
            name = event_name(event)
            self.totals[name] += 1
            if name == "MARKER_RECORDED":
                marker = event.marker_recorded_event_attributes.marker_name
                self.totals[f"marker:{marker}"] += 1
                if "local_activity" in marker:
                    self.totals["local acts"] += 1
            self.totals["payload bytes"] += payload_bytes(event)
            self.totals["history bytes"] += event.ByteSize()

    def per(self, key: str) -> float:
        return self.totals[key] / self.lifecycles if self.lifecycles else 0.0


async def lifecycle_events(client: Client, workflow_id: str) -> tuple[list[HistoryEvent], int]:
    """Events of every run of a workflow id (a continue-as-new chain, walked back from the latest
    run), oldest run first; and the number of runs."""
    runs: list[list[HistoryEvent]] = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append(list(history.events))
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            break
        run_id = started.continued_execution_run_id
    return [event for run in reversed(runs) for event in run], len(runs)


async def count(client: Client, workflow_ids: Sequence[str], sample: int, concurrency: int = 10) -> Counts:
    chosen = list(workflow_ids) if len(workflow_ids) <= sample else random.sample(list(workflow_ids), sample)
    counts = Counts()
    gate = asyncio.Semaphore(concurrency)

    async def one(workflow_id: str) -> None:
        async with gate:
            events, runs = await lifecycle_events(client, workflow_id)
        counts.add(events, runs)

    await asyncio.gather(*(one(workflow_id) for workflow_id in chosen))
    return counts


def table(rows: dict[str, Counts]) -> list[str]:
    """The per-lifecycle table, a ratio line against the first row, and the markers by name."""
    widths = [max(len(name), 7) for name, _ in COLUMNS]
    label = max(len(name) for name in rows) + 2
    lines = ["  " + " " * label + "  ".join(name.rjust(w) for (name, _), w in zip(COLUMNS, widths, strict=True))]
    for row, counts in rows.items():
        cells = []
        for (name, key), width in zip(COLUMNS, widths, strict=True):
            value = counts.per(key) / 1024 if name.endswith("KB") else counts.per(key)
            cells.append(f"{value:.1f}".rjust(width))
        lines.append(f"  {row.ljust(label)}" + "  ".join(cells) + f"   (n={counts.lifecycles})")
    names = list(rows)
    base = rows[names[0]]
    for row in names[1:]:
        ratios = []
        for key, what in (("events", "events"), ("WORKFLOW_TASK_COMPLETED", "wf tasks"), ("history bytes", "bytes")):
            if base.per(key):
                ratios.append(f"{what} {rows[row].per(key) / base.per(key):.2f}")
        lines.append(f"  {row}/{names[0]}: " + ", ".join(ratios))
    for row, counts in rows.items():
        markers = sorted(k for k in counts.totals if k.startswith("marker:"))
        if markers:
            lines.append(f"  {row} markers by name: " + ", ".join(f"{k[7:]} {counts.per(k):.1f}" for k in markers))
    return lines


def event_types(rows: dict[str, Counts]) -> list[str]:
    """Mean count of every event type per lifecycle, one column per row of `rows`."""
    kinds = sorted(
        {k for c in rows.values() for k in c.totals if k.isupper() and not k.startswith("marker:")},
        key=lambda k: -max(c.per(k) for c in rows.values()),
    )
    width = max((len(k) for k in kinds), default=10)
    lines = ["  " + "event type".ljust(width) + "".join(name.rjust(10) for name in rows)]
    for kind in kinds:
        lines.append("  " + kind.lower().ljust(width) + "".join(f"{c.per(kind):10.1f}" for c in rows.values()))
    return lines
