"""The parts of an escalation policy as pydantic models: calendars, tiers, targets, ladders, routes,
permissions and guards.

Each model validates its own fields; whole-policy checks live in `config/checks.py`, the root model
in `config/model.py`. Imported by workflow code, so free of I/O at import time.
"""

from __future__ import annotations

import itertools
from datetime import date, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# Validation context of a frozen policy read back from a ticket's history: decoded as data, not
# judged again by today's rules (a check added later must not fail a ticket already running).
FROZEN = {"frozen": True}


def is_frozen(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("frozen"))


class Strict(BaseModel):
    """Base for policy models: unknown keys are errors, so a typo never silently disables a rule.

    Except in a frozen policy (context `FROZEN`): there unknown keys, written by a newer version
    of this code, are dropped.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_when_frozen(cls, data: Any, info: ValidationInfo) -> Any:
        if is_frozen(info) and isinstance(data, dict):
            return {k: v for k, v in data.items() if k in cls.model_fields}
        return data


class Channel(StrEnum):
    email = "email"
    web = "web"
    chat = "chat"
    phone = "phone"
    social_public = "social_public"
    social_private = "social_private"


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"

    @property
    def rank(self) -> int:
        return list(Priority).index(self)


class Role(StrEnum):
    agent = "agent"
    lead = "lead"
    manager = "manager"
    system = "system"


class Recipient(StrEnum):
    """Who a ladder step notifies, resolved against the ticket's department and assignee."""

    assignee = "assignee"
    team_lead = "team_lead"
    department_head = "department_head"
    queue = "queue"


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Person(Strict):
    id: str
    email: str | None = None


MIDNIGHT_END = "24:00"


class Period(Strict):
    """One working period of a day in the calendar's local time, `start` < `end`.

    `end` may be `24:00`: the period runs to the end of the day (midnight of the next day), so a
    calendar open until midnight keeps its last minute. The period holds its start instant out
    and its end instant in (see `workflows/clock.py`)."""

    start: time
    end: time | Literal["24:00"]

    @field_validator("start", "end", mode="before")
    @classmethod
    def _wall_time(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and not is_frozen(info):
            # YAML 1.1 reads an unquoted 17:00 as the number 1020 (base 60); as seconds it would be 00:17.
            raise ValueError(f'write times in quotes, e.g. "17:00" (YAML read an unquoted time as the number {value})')
        if info.field_name == "end" and isinstance(value, str) and value.strip() in ("24:00", "24:00:00"):
            return MIDNIGHT_END
        return value

    @property
    def end_key(self) -> tuple[int, time]:
        """Orders ends: any time of the day, then `24:00`."""
        return (1, time(0)) if self.end == MIDNIGHT_END else (0, cast(time, self.end))

    @model_validator(mode="after")
    def _ordered(self, info: ValidationInfo) -> Period:
        if is_frozen(info):
            return self
        if self.end_key <= (0, self.start):
            raise ValueError(f"period ends ({self.end}) at or before it starts ({self.start})")
        return self


class CountryHolidays(Strict):
    country: str = Field(description="ISO 3166 code understood by the `holidays` package, e.g. DE")
    subdivision: str | None = None


class Calendar(Strict):
    """Business calendar. `always_open` makes a 24x7 calendar; otherwise `hours` lists working periods."""

    timezone: str = "UTC"
    always_open: bool = False
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[Period]] = Field(default_factory=dict)
    holidays: list[date] = Field(default_factory=list)
    country_holidays: CountryHolidays | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str, info: ValidationInfo) -> str:
        if is_frozen(info):
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _has_hours(self, info: ValidationInfo) -> Calendar:
        if is_frozen(info):
            return self
        if not self.always_open and not any(self.hours.values()):
            raise ValueError("a calendar that is not always_open needs working hours")
        for day, periods in self.hours.items():
            ordered = sorted(periods, key=lambda p: p.start)
            for before, after in itertools.pairwise(ordered):
                if (0, after.start) < before.end_key:
                    raise ValueError(f"hours.{day}: periods overlap")
        return self


class Targets(Strict):
    first_response: timedelta
    resolution: timedelta

    @model_validator(mode="after")
    def _positive(self, info: ValidationInfo) -> Targets:
        if is_frozen(info):
            return self
        if self.first_response <= timedelta(0) or self.resolution <= timedelta(0):
            raise ValueError("SLA targets must be positive durations")
        return self


PriorityTargets = dict[Priority, Targets]
TierTargets = dict[int, PriorityTargets]


class Tier(Strict):
    level: int = Field(ge=1, le=9)
    name: str
    escalates_to: int | None = Field(
        default=None, description="level a hierarchical escalation goes to; default the next level"
    )


class Department(Strict):
    name: str | None = None
    head: Person | None = None
    team_lead: Person | None = None
    queues: dict[int, str] = Field(default_factory=dict, description="queue name per tier level")
    skills: list[str] = Field(default_factory=list)


class NotifyAction(Strict):
    type: Literal["notify"]
    roles: list[Recipient] = Field(min_length=1)


class ReassignAction(Strict):
    type: Literal["reassign"]
    to: Literal["tier_queue"] = "tier_queue"


class EscalateAction(Strict):
    type: Literal["escalate"]


class CcAction(Strict):
    type: Literal["cc_department_head"]


LadderAction = Annotated[NotifyAction | ReassignAction | EscalateAction | CcAction, Field(discriminator="type")]


class Repeat(Strict):
    interval: timedelta
    count: int | None = Field(default=None, ge=1, description="repeats after the first; none: until stopped")

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if value <= timedelta(0) and not is_frozen(info):
            raise ValueError("repeat interval must be positive")
        return value


class LadderStep(Strict):
    """One rung: fires at a share of the target, or a duration after the breach."""

    id: str
    at_percent: float | None = Field(default=None, gt=0)
    after_breach: timedelta | None = None
    actions: list[LadderAction] = Field(min_length=1)
    repeat: Repeat | None = None
    tiers: list[int] | None = Field(default=None, description="tier levels the step applies to; none: all")

    @model_validator(mode="after")
    def _one_trigger(self, info: ValidationInfo) -> LadderStep:
        if is_frozen(info):
            return self
        if (self.at_percent is None) == (self.after_breach is None):
            raise ValueError("give exactly one of at_percent and after_breach")
        if self.after_breach is not None and self.after_breach < timedelta(0):
            raise ValueError("after_breach must not be negative")
        return self

    @property
    def is_warning(self) -> bool:
        return self.at_percent is not None and self.at_percent < 100

    def sort_key(self) -> tuple[int, float]:
        """Chronological order within a clock: percentages first, then time after breach."""
        if self.at_percent is not None:
            return (0, self.at_percent) if self.at_percent < 100 else (1, 0.0)
        assert self.after_breach is not None
        return (1, self.after_breach.total_seconds())


class Ladders(Strict):
    first_response: list[LadderStep] = Field(default_factory=list)
    resolution: list[LadderStep] = Field(default_factory=list)


class SegmentOverride(Strict):
    tier: int | None = None
    priority_floor: Priority | None = None
    targets: TierTargets = Field(default_factory=dict)


class SelfService(Strict):
    """Tier 0: send a knowledge-base answer and wait for the customer before a human picks it up."""

    kb_url: str
    wait: timedelta


class RouteMatch(Strict):
    channel: list[Channel] = Field(default_factory=list)
    category: list[str] = Field(default_factory=list)
    priority: list[Priority] = Field(default_factory=list)
    segment: list[str] = Field(default_factory=list)

    def is_catch_all(self) -> bool:
        return not (self.channel or self.category or self.priority or self.segment)

    def covers(self, other: RouteMatch) -> bool:
        """True when every ticket `other` matches is matched by self too (so self shadows other)."""
        for mine, theirs in (
            (self.channel, other.channel),
            (self.category, other.category),
            (self.priority, other.priority),
            (self.segment, other.segment),
        ):
            if mine and (not theirs or not set(theirs) <= set(mine)):
                return False
        return True


class Route(Strict):
    name: str
    match: RouteMatch = Field(default_factory=RouteMatch)
    tier: int = 1
    department: str
    calendar: str
    priority_floor: Priority | None = Field(default=None, description="raise the priority to at least this")
    targets: TierTargets = Field(default_factory=dict, description="overrides of the policy's sla")
    segments: dict[str, SegmentOverride] = Field(default_factory=dict)
    self_service: SelfService | None = None


class Permission(Strict):
    reassign: Literal["none", "own_queue", "own_department", "any"] = "own_queue"
    escalate: bool = True
    authority_limit: float = Field(default=0, ge=0, description="largest refund or discount without approval")
    decide_approvals: bool = False


class Guards(Strict):
    require_reason: bool = True
    min_time_in_tier: timedelta = timedelta(0)
    min_time_waived_for_priorities: list[Priority] = Field(default_factory=lambda: [Priority.urgent])
    min_time_waived_for_roles: list[Role] = Field(default_factory=lambda: [Role.lead, Role.manager])
    allow_skip_level: bool = False
    max_department_bounces: int = Field(default=2, ge=0)


class Approvals(Strict):
    timeout: timedelta = timedelta(hours=4)
