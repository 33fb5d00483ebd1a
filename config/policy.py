"""The escalation policy: schema, semantic checks and loading.

The policy is configuration, not code. It is validated twice at load: field by field by pydantic,
then as a whole by `check_semantics` (references, reachability, cycles), so a policy that would
misbehave at 3 a.m. is refused at start with the place and the reason.

This module is imported by workflow code (through the sandbox's passthrough), so it must stay free
of I/O at import time. Reading files and resolving public holidays live in `load_policy_file` and
`resolve_holidays`, which only workers, the CLI and activities call.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import date, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from config.event_types import EVENT_TYPES as EVENT_TYPES
from config.event_types import TEMPLATE_PARTS as TEMPLATE_PARTS

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


class ChannelKind(StrEnum):
    """How a notice travels. `webhook` is the signed platform feed; the others reach people."""

    webhook = "webhook"
    email = "email"
    slack = "slack"
    teams = "teams"


PEOPLE_CHANNELS = (ChannelKind.email, ChannelKind.slack, ChannelKind.teams)


class Endpoint(Strict):
    """A named destination. Where it is (URL, SMTP server) and its credentials come from settings
    (`ESCALATIONS_ENDPOINTS`), resolved inside the delivery activity: never in a ticket's history.

    A `url` here is accepted for webhook endpoints only (a plain, non-secret URL; legacy); it is
    stripped from the policy a ticket freezes and looked up again by name at delivery."""

    name: str
    channel: ChannelKind = ChannelKind.webhook
    url: str | None = None
    event_types: list[str] = Field(default_factory=list, description="empty: every event type")

    @model_validator(mode="after")
    def _url_only_for_webhooks(self, info: ValidationInfo) -> Endpoint:
        if is_frozen(info):
            return self
        if self.url is not None and self.channel != ChannelKind.webhook:
            raise ValueError(
                f"a {self.channel.value} endpoint takes no url in the policy (it is a secret): "
                "give it in the ESCALATIONS_ENDPOINTS setting under the same name"
            )
        return self


class FloodLimit(Strict):
    """At most `limit` notices per `window` to one recipient through one endpoint; beyond, the
    notices of that window are grouped into one digest sent at the window's end."""

    limit: int = Field(ge=0)
    window: timedelta

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if not is_frozen(info) and not timedelta(seconds=1) <= value <= timedelta(days=1):
            raise ValueError("window must be between 1 second and 1 day")
        return value


class RecipientChannels(Strict):
    """How one role or one person is reached: endpoints (email, slack, teams) and flood control."""

    endpoints: list[str] = Field(default_factory=list)
    email: str | None = Field(default=None, description="address for email endpoints (people only)")
    flood: FloodLimit | None = None


TemplateSet = dict[str, dict[str, str]]  # event type (or "default") -> part -> Jinja2 source


class Notifications(Strict):
    endpoints: list[Endpoint] = Field(default_factory=list)
    roles: dict[Recipient, RecipientChannels] = Field(
        default_factory=dict, description="per recipient role: endpoints and flood control"
    )
    people: dict[str, RecipientChannels] = Field(
        default_factory=dict, description="per person id: overrides the role's entry"
    )
    flood: FloodLimit | None = Field(default=None, description="default flood control for people's channels")
    templates: dict[Literal["email", "slack", "teams"], TemplateSet] = Field(
        default_factory=dict, description="overrides of the built-in templates"
    )
    retry_for: timedelta = Field(
        default=timedelta(days=2),
        ge=timedelta(minutes=1),
        description="how long an undelivered notice is retried before it is marked failed (and kept)",
    )
    retry_max_interval: timedelta = Field(
        default=timedelta(minutes=10), ge=timedelta(seconds=1), description="longest wait between two tries"
    )


class Policy(Strict):
    """The whole escalation policy. `version` is the author's label; `fingerprint()` adds a content hash."""

    version: str
    tiers: list[Tier] = Field(min_length=1)
    departments: dict[str, Department] = Field(min_length=1)
    calendars: dict[str, Calendar] = Field(min_length=1)
    sla: TierTargets
    ladders: Ladders = Field(default_factory=Ladders)
    routes: list[Route] = Field(min_length=1)
    guards: Guards = Field(default_factory=Guards)
    permissions: dict[Role, Permission] = Field(default_factory=dict)
    approvals: Approvals = Field(default_factory=Approvals)
    reopen_window: timedelta = timedelta(days=7)
    notifications: Notifications = Field(default_factory=Notifications)

    @model_validator(mode="after")
    def _semantics(self, info: ValidationInfo) -> Policy:
        if is_frozen(info):
            return self
        problems = check_semantics(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # Lookups used by the pure logic and the workflow.
    def tier_levels(self) -> list[int]:
        return sorted(t.level for t in self.tiers)

    def next_tier(self, level: int) -> int | None:
        tier = next((t for t in self.tiers if t.level == level), None)
        if tier is not None and tier.escalates_to is not None:
            return tier.escalates_to
        higher = [lv for lv in self.tier_levels() if lv > level]
        return higher[0] if higher else None

    def permission(self, role: Role) -> Permission:
        return self.permissions.get(role, Permission())

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def version_label(self, source: str | Path) -> str:
        """The one policy version string: the author's label, the content fingerprint and the file
        name, e.g. `2026.11-default+1a2b3c4d5e6f (default.yaml)`. `policy check`, the worker's log and
        every ticket it opens (status, timeline, summary) show exactly this string."""
        return f"{self.version}+{self.fingerprint()} ({Path(source).name})"


def check_semantics(policy: Policy) -> list[str]:
    """Whole-policy checks pydantic cannot express; each message starts with the place it is about."""
    problems: list[str] = []
    levels = {t.level for t in policy.tiers}

    for tier in policy.tiers:
        if tier.escalates_to is not None and tier.escalates_to not in levels:
            problems.append(f"tiers[level={tier.level}].escalates_to: unknown tier {tier.escalates_to}")
    problems += _escalation_cycles(policy, levels)

    for level in policy.sla:
        if level not in levels:
            problems.append(f"sla.{level}: unknown tier {level}")
    for level in levels:
        missing = [p.value for p in Priority if p not in policy.sla.get(level, {})]
        if missing:
            problems.append(f"sla.{level}: no targets for priorities {', '.join(missing)}")

    for name, cal in policy.calendars.items():
        if cal.always_open and cal.hours:
            problems.append(f"calendars.{name}: always_open calendars take no hours")

    for clock in ("first_response", "resolution"):
        problems += _ladder_problems(policy, clock, getattr(policy.ladders, clock), levels)

    headless = sorted(n for n, d in policy.departments.items() if d.head is None)
    uses_cc = any(
        isinstance(a, CcAction)
        for steps in (policy.ladders.first_response, policy.ladders.resolution)
        for s in steps
        for a in s.actions
    )
    if uses_cc and headless:
        problems.append(f"ladders: cc_department_head is used but department(s) {', '.join(headless)} have no head")

    for i, route in enumerate(policy.routes):
        place = f"routes[{i}] ({route.name})"
        if route.department not in policy.departments:
            problems.append(f"{place}.department: unknown department {route.department!r}")
        if route.calendar not in policy.calendars:
            problems.append(f"{place}.calendar: unknown calendar {route.calendar!r}")
        if route.tier not in levels:
            problems.append(f"{place}.tier: unknown tier {route.tier}")
        for seg, override in route.segments.items():
            if override.tier is not None and override.tier not in levels:
                problems.append(f"{place}.segments.{seg}.tier: unknown tier {override.tier}")
        for j in range(i):
            earlier = policy.routes[j]
            if earlier.match.covers(route.match):
                kind = "catch-all" if earlier.match.is_catch_all() else "route"
                problems.append(f"{place}: shadowed by earlier {kind} routes[{j}] ({earlier.name}); it can never match")
                break
    if not policy.routes[-1].match.is_catch_all():
        problems.append(f"routes[{len(policy.routes) - 1}]: the last route must be a catch-all default")

    for role in policy.permissions:
        if role not in set(Role):
            problems.append(f"permissions.{role}: unknown role")
    problems += _notification_problems(policy.notifications)
    return problems


def _notification_problems(n: Notifications) -> list[str]:
    problems: list[str] = []
    channels: dict[str, ChannelKind] = {}
    for i, endpoint in enumerate(n.endpoints):
        if endpoint.name in channels:
            problems.append(f"notifications.endpoints[{i}] ({endpoint.name}): duplicate endpoint name")
        channels[endpoint.name] = endpoint.channel
    for kind, entries in (("roles", n.roles), ("people", n.people)):
        for who, entry in entries.items():
            place = f"notifications.{kind}.{who}"
            for name in entry.endpoints:
                if name not in channels:
                    problems.append(f"{place}.endpoints: unknown endpoint {name!r} (known: {', '.join(channels)})")
                elif channels[name] == ChannelKind.webhook:
                    problems.append(
                        f"{place}.endpoints: {name!r} is a webhook endpoint (webhooks get every event); "
                        "list email, slack or teams endpoints here"
                    )
            if kind == "roles" and entry.email is not None:
                problems.append(f"{place}.email: addresses belong to people, not roles")
    for channel, templates in n.templates.items():
        for event_type, parts in templates.items():
            place = f"notifications.templates.{channel}.{event_type}"
            if event_type != "default" and event_type not in EVENT_TYPES:
                problems.append(f"{place}: unknown event type (known: default, {', '.join(EVENT_TYPES)})")
            for part in parts:
                if part not in TEMPLATE_PARTS[channel]:
                    problems.append(f"{place}.{part}: unknown part (known: {', '.join(TEMPLATE_PARTS[channel])})")
    return problems


def _escalation_cycles(policy: Policy, levels: set[int]) -> list[str]:
    problems = []
    for start in sorted(levels):
        seen = [start]
        current: int | None = start
        while current is not None:
            current = policy.next_tier(current) if current in levels else None
            if current is None:
                break
            if current in seen:
                chain = " -> ".join(str(x) for x in [*seen, current])
                problems.append(f"tiers: escalation chain cycles ({chain})")
                return problems
            seen.append(current)
    return problems


def _ladder_problems(policy: Policy, clock: str, steps: list[LadderStep], levels: set[int]) -> list[str]:
    problems: list[str] = []
    top = max(levels)
    ids: set[str] = set()
    seen_breach = False
    escalating: LadderStep | None = None
    for i, step in enumerate(steps):
        place = f"ladders.{clock}[{i}] ({step.id})"
        if step.id in ids:
            problems.append(f"{place}: duplicate step id")
        ids.add(step.id)
        if step.is_warning and seen_breach:
            problems.append(f"{place}: a warning listed after its breach step; warnings come first")
        if not step.is_warning:
            seen_breach = True
        if step.at_percent is not None and step.at_percent > 100:
            problems.append(f"{place}: at_percent above 100; use after_breach for steps past the deadline")
        for level in step.tiers or []:
            if level not in levels:
                problems.append(f"{place}.tiers: unknown tier {level}")
        if step.repeat is not None and any(isinstance(a, EscalateAction) for a in step.actions):
            problems.append(f"{place}: an escalate action cannot repeat")
        applies = set(step.tiers) if step.tiers else levels
        if escalating is not None and step.sort_key() > escalating.sort_key():
            esc_tiers = set(escalating.tiers) if escalating.tiers else levels
            # On tiers where the earlier step escalates away (all but the top), this step never fires.
            if clock == "resolution" and applies <= (esc_tiers - {top}):
                problems.append(
                    f"{place}: unreachable, step {escalating.id!r} escalates the ticket away before it fires"
                )
        if clock == "resolution" and any(isinstance(a, EscalateAction) for a in step.actions):
            escalating = escalating or step
    return problems


_SNAPSHOTS: dict[str, Policy] = {}
_SNAPSHOTS_MAX = 64


def policy_from_snapshot(fingerprint: str, document: dict[str, Any]) -> Policy:
    """The `Policy` of a snapshot, validated once per fingerprint and shared by every ticket using it.

    Safe inside workflows: the result depends only on the document (policies are frozen, and the
    fingerprint is a hash of the same document), so sharing changes no decision; it saves each
    open ticket its own copy and each workflow start a full validation.
    """
    cached = _SNAPSHOTS.get(fingerprint)
    if cached is not None:
        return cached
    policy = Policy.model_validate(document, context=FROZEN)
    if len(_SNAPSHOTS) >= _SNAPSHOTS_MAX:
        _SNAPSHOTS.pop(next(iter(_SNAPSHOTS)))
    _SNAPSHOTS[fingerprint] = policy
    return policy


class PolicyError(Exception):
    """A policy file that cannot be used; `problems` lists 'place: reason' lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid policy {source}:\n" + "\n".join(f"  - {p}" for p in problems))


def parse_policy(data: Any, source: str = "<policy>") -> Policy:
    """Validate a decoded policy document, turning pydantic's errors into 'place: reason' lines."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if not loc:  # whole-policy semantic checks arrive joined
                problems += msg.split("\n")
            else:
                problems.append(f"{loc}: {msg}")
        raise PolicyError(source, problems) from None


def load_policy_file(path: str | Path) -> Policy:
    """Read and validate a YAML or JSON policy file."""
    import yaml  # local import: keeps this module light for the workflow sandbox

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise PolicyError(str(p), [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise PolicyError(str(p), [f"not valid YAML/JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise PolicyError(str(p), ["the document must be a mapping"])
    policy = parse_policy(data, str(p))
    problems = holiday_problems(policy)
    if not problems:
        from config.templates import template_problems  # local import: keeps the sandbox light

        problems = template_problems(policy)
    if problems:
        raise PolicyError(str(p), problems)
    return policy


def holiday_problems(policy: Policy) -> list[str]:
    """Country holidays the `holidays` package cannot expand (unknown country or subdivision).

    Checked at load, so `policy check` and the worker's start refuse them instead of every new
    ticket failing later while its policy is frozen.
    """
    import holidays as holidays_lib

    problems = []
    for name, cal in policy.calendars.items():
        ch = cal.country_holidays
        if ch is None:
            continue
        try:
            holidays_lib.country_holidays(ch.country, subdiv=ch.subdivision, years=[2026])
        except (NotImplementedError, KeyError, ValueError) as exc:
            place = f"calendars.{name}.country_holidays"
            where = f"{ch.country}/{ch.subdivision or '-'}"
            problems.append(f"{place}: {where} is not known to the holidays package ({exc})")
    return problems


def resolve_holidays(policy: Policy, years: range) -> Policy:
    """Expand each calendar's country holidays into explicit dates for `years`.

    Workflows must not consult the `holidays` package while running (its data changes between
    releases, which would break replay), so the snapshot a ticket starts with carries the dates.
    """
    import holidays as holidays_lib

    calendars: dict[str, Calendar] = {}
    for name, cal in policy.calendars.items():
        if cal.country_holidays is None:
            calendars[name] = cal
            continue
        found = holidays_lib.country_holidays(
            cal.country_holidays.country, subdiv=cal.country_holidays.subdivision, years=list(years)
        )
        dates = sorted(set(cal.holidays) | set(found.keys()))
        calendars[name] = cal.model_copy(update={"holidays": dates, "country_holidays": None})
    return policy.model_copy(update={"calendars": calendars})
