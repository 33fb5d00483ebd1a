"""Spikes: departments whose escalations or breaches on a day stand above their own recent normal.

`daily_counts` counts per department and day from the derived tickets; `find_spikes` compares a
day with the baseline days before it. The spike watch workflow runs these through an activity.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from config.policy import Calendar
from review.business_time import Frozen, TicketCalendars
from review.derive import derive
from review.rows import TicketFacts


class Spike(BaseModel):
    department: str
    day: date
    measure: Literal["escalations", "breaches"]
    count: int
    mean: float
    upper: float = Field(description="top of the normal band: mean + sigma x standard deviation, at least the floor")
    baseline_days: int


def daily_counts(
    tickets: Iterable[TicketFacts], calendars: Mapping[str, Calendar], now: datetime, frozen: Frozen | None = None
) -> dict[tuple[str, date, str], int]:
    """(department, UTC day, measure) -> count of escalations (by the department that escalated) and
    breaches (by the department that held the ticket), by the day they happened."""
    cals = TicketCalendars(calendars, frozen)
    counts: Counter[tuple[str, date, str]] = Counter()
    for t in tickets:
        r = derive(t, cals.business(t.policy_version, t.opened_at), now)
        for e in r.escalations:
            counts[(e.department, e.at.astimezone(UTC).date(), "escalations")] += 1
        for b in r.breaches:
            counts[(b.department, b.deadline.astimezone(UTC).date(), "breaches")] += 1
    return dict(counts)


def find_spikes(
    counts: Mapping[tuple[str, date, str], int],
    day: date,
    *,
    baseline_days: int = 28,
    sigma: float = 3.0,
    floor: int = 5,
) -> list[Spike]:
    """Departments whose escalations or breaches on `day` are above the normal band of the
    `baseline_days` before it: more than mean + sigma x (population) standard deviation, and at
    least `floor` (a quiet department's second escalation is not a spike)."""
    departments = sorted({k[0] for k in counts})
    spikes = []
    for dept in departments:
        for measure in ("escalations", "breaches"):
            today = counts.get((dept, day, measure), 0)
            if today < floor:
                continue
            history = [counts.get((dept, day - timedelta(days=i), measure), 0) for i in range(1, baseline_days + 1)]
            mean = statistics.fmean(history)
            upper = max(mean + sigma * statistics.pstdev(history), float(floor) - 0.5)
            if today > upper:
                spikes.append(
                    Spike(
                        department=dept,
                        day=day,
                        measure=measure,
                        count=today,
                        mean=round(mean, 3),
                        upper=round(upper, 3),
                        baseline_days=baseline_days,
                    )
                )
    return spikes
