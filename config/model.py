"""The root model of an escalation policy, `Policy`, and the lookups the pure logic uses on it.

It validates twice: field by field through its parts (`config/schema.py`,
`config/notification_schema.py`), then as a whole by `config/checks.py`, so a policy that would
misbehave at 3 a.m. is refused at start with the place and the reason.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

from pydantic import Field, ValidationInfo, model_validator

from config.checks import check_semantics
from config.helpdesk_schema import HelpdeskMapping
from config.notification_schema import Notifications
from config.schema import (
    Approvals,
    Calendar,
    Department,
    Guards,
    Ladders,
    Permission,
    Role,
    Route,
    Strict,
    Tier,
    TierTargets,
    is_frozen,
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
    helpdesks: dict[str, HelpdeskMapping] = Field(
        default_factory=dict,
        description="per connector endpoint name: the helpdesk's ids to ours (config/helpdesk_schema.py); not frozen",
    )

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
        """A hash of what the policy says: its values that differ from the defaults, in canonical JSON.

        A later version of the product that adds a field with a default (or a default a file spells
        out) leaves the same file's fingerprint as it was, so its tickets group as one policy."""
        content = self.model_dump(mode="json", exclude_defaults=True)
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def version_label(self, source: str | Path) -> str:
        """The one policy version string: the author's label, the content fingerprint and the file
        name, e.g. `2026.11-default+1a2b3c4d5e6f (default.yaml)`. `policy check`, the worker's log and
        every ticket it opens (status, timeline, summary) show exactly this string."""
        return f"{self.version}+{self.fingerprint()} ({Path(source).name})"
