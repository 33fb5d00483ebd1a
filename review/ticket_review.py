"""What the review knows about one ticket once its rows are walked (`review/derive.py`): ownership
periods, breaches, escalations, the clocks as they ran, and the SLA used now.

The aggregation (`review/aggregate.py`) and the spike watch (`review/spikes.py`) count these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class Period:
    """An ownership period: the ticket held by one tier and department."""

    tier: int
    department: str
    start: datetime
    end: datetime | None = None
    resolution_target: timedelta | None = None
    business: timedelta = timedelta(0)
    breaches: int = 0


@dataclass
class Breach:
    clock: str
    deadline: datetime
    tier: int
    department: str
    past: timedelta = timedelta(0)  # business time past the deadline while the clock ran on


@dataclass
class Escalation:
    at: datetime
    kind: str  # functional | hierarchical
    trigger: str  # ladder | manual | policy
    reason: str
    department: str  # the department that held the ticket (and escalated it)


@dataclass
class ClockRun:
    name: str
    target: timedelta | None
    deadline: datetime | None
    running_since: datetime | None
    started: datetime | None = None  # when this run of the clock started counting
    segments: list[tuple[datetime, datetime]] = field(default_factory=list)
    remaining_at_pause: timedelta | None = None
    breach: Breach | None = None


@dataclass
class AtRisk:
    clock: str
    used: float  # share of the SLA target used, 1.0 or more: breached
    deadline: datetime | None
    band: str


@dataclass
class TicketReview:
    """What the metrics need to know about one ticket, derived from its rows."""

    ticket_id: str
    opened_at: datetime
    channel: str
    category: str
    priority: str
    policy_version: str
    department: str  # at routing
    tier: int  # the first human tier (0 while only self-service)
    calendar: str | None
    is_open: bool = True
    resolved_once: bool = False
    reopens: int = 0
    self_service: bool = False
    deflected: bool = False
    clocks_started: set[str] = field(default_factory=set)
    first_response: timedelta | None = None
    resolution: timedelta | None = None
    paused: timedelta = timedelta(0)
    periods: list[Period] = field(default_factory=list)
    breaches: list[Breach] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)
    ladder_rules: list[str] = field(default_factory=list)
    assignees: set[str] = field(default_factory=set)
    reached_person: bool = False  # a person (agent, lead, manager) acted on it or was assigned it
    at_risk: AtRisk | None = None

    @property
    def departments(self) -> set[str]:
        return {p.department for p in self.periods if p.tier > 0} or {self.department}

    def group_key(self, by: str) -> str:
        if by == "none":
            return "all"
        value = self.tier if by == "tier" else getattr(self, by)
        return str(value)
