"""The public facade of the policy package: every public name of the escalation policy, from the
modules that define it, so `from config.policy import Policy` keeps working wherever it is written.

Where things live: the parts of a policy in `config/schema.py` and `config/notification_schema.py`,
the root model `Policy` in `config/model.py`, whole-policy checks in `config/checks.py`, reading a
file in `config/loading.py`, public holidays in `config/holiday_dates.py`, the cache of frozen
policies in `config/snapshots.py`, notice templates in `config/templates.py`. This module defines
nothing of its own.
"""

from __future__ import annotations

from config.checks import check_semantics
from config.holiday_dates import (
    holiday_problems,
    holiday_years,
    resolve_holidays,
)
from config.loading import (
    PolicyError,
    load_policy_file,
    parse_policy,
)
from config.model import Policy
from config.notification_schema import (
    EVENT_TYPES,
    TEMPLATE_PARTS,
    ChannelKind,
    Endpoint,
    FloodLimit,
    Notifications,
    RecipientChannels,
    TemplateSet,
)
from config.schema import (
    FROZEN,
    MIDNIGHT_END,
    WEEKDAYS,
    Approvals,
    Calendar,
    CcAction,
    Channel,
    CountryHolidays,
    Department,
    EscalateAction,
    Guards,
    LadderAction,
    Ladders,
    LadderStep,
    NotifyAction,
    Period,
    Permission,
    Person,
    Priority,
    PriorityTargets,
    ReassignAction,
    Recipient,
    Repeat,
    Role,
    Route,
    RouteMatch,
    SegmentOverride,
    SelfService,
    Strict,
    Targets,
    Tier,
    TierTargets,
    is_frozen,
)
from config.snapshots import policy_from_snapshot

__all__ = [
    "EVENT_TYPES",
    "FROZEN",
    "MIDNIGHT_END",
    "TEMPLATE_PARTS",
    "WEEKDAYS",
    "Approvals",
    "Calendar",
    "CcAction",
    "Channel",
    "ChannelKind",
    "CountryHolidays",
    "Department",
    "Endpoint",
    "EscalateAction",
    "FloodLimit",
    "Guards",
    "LadderAction",
    "LadderStep",
    "Ladders",
    "Notifications",
    "NotifyAction",
    "Period",
    "Permission",
    "Person",
    "Policy",
    "PolicyError",
    "Priority",
    "PriorityTargets",
    "ReassignAction",
    "Recipient",
    "RecipientChannels",
    "Repeat",
    "Role",
    "Route",
    "RouteMatch",
    "SegmentOverride",
    "SelfService",
    "Strict",
    "Targets",
    "TemplateSet",
    "Tier",
    "TierTargets",
    "check_semantics",
    "holiday_problems",
    "holiday_years",
    "is_frozen",
    "load_policy_file",
    "parse_policy",
    "policy_from_snapshot",
    "resolve_holidays",
]
