"""What `decide()` takes and returns: the context, the three kinds of input, the decision.

Kept apart from the decision code so that the workflow, the simulator and the tests can name an
input or read a decision without importing how decisions are made. Plain frozen dataclasses:
nothing here imports Temporal, and nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from workflows.models import TimelineEvent
from workflows.state import Notice, TicketState


@dataclass(frozen=True)
class Ctx:
    """What a decision may know besides the state: the time, the ticket's ids, the patches in force."""

    now: datetime
    workflow_id: str
    life: str  # the first run id of this ticket's life: unique per life, stable across continue-as-new
    patched: Callable[[str], bool] = field(default=lambda _patch_id: True)


@dataclass(frozen=True)
class Action:
    """An agent action as it arrived: `data` is the decoded JSON value, or `Undecodable`."""

    input: ClassVar[str] = "action"
    name: str
    data: Any
    via: Literal["signal", "update"] = "update"
    key: str | None = None  # idempotency key (the update id); a repeat applies nothing
    # The body's fingerprint sent with the key: the key again with another
    # body is refused, not answered as if it had been applied.
    digest: str | None = None


@dataclass(frozen=True)
class Undecodable:
    error: str
    undecodable: ClassVar[bool] = True


@dataclass(frozen=True)
class Tick:
    """Time has passed: do whatever is due at `ctx.now`."""

    input: ClassVar[str] = "tick"


@dataclass(frozen=True)
class Delivery:
    """The outcome of one try of an outbox entry."""

    input: ClassVar[str] = "delivery"
    key: str
    ok: bool
    error: str | None = None
    final: bool = False  # the receiver refused for good (4xx): no more automatic tries
    retry_after: timedelta | None = None  # the receiver asked for a pause (429 Retry-After)
    detail: dict[str, Any] = field(default_factory=dict)


Input = Action | Tick | Delivery


@dataclass(frozen=True)
class Refusal:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass
class Decision:
    state: TicketState
    events: list[TimelineEvent]
    effects: list[Notice]
    refusal: Refusal | None = None
    duplicate: bool = False
