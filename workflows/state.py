"""The ticket's persisted state: what decisions need, carried across continue-as-new.

Everything here is read back from history by code that may be newer or older than the code that
wrote it, so every model ignores unknown fields and `TicketState` carries a `schema_version`.
Bounded on purpose: the timeline is not here (it lives in each run's history and in the audit
export), lists that could grow with the ticket's age keep their newest entries only, and the
outbox drops nothing silently (see `workflows/outbox.py`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from config.policy import Priority
from workflows.messages import DeliverInput, ReassignInput, StoredEvent
from workflows.models import Approval, ClockName, RouteDecision, State

SCHEMA_VERSION = 1
MAX_VISITED = 50  # tiers/departments remembered for guards and the summary
MAX_KEYS = 64  # idempotency keys of recently applied actions
MAX_OUTBOX = 100  # notices waiting or kept for redelivery; beyond, the oldest go (recorded, counted)


class Persisted(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class Clock(Persisted):
    """One SLA clock. Business time consumed so far = `consumed` + time since `running_since`."""

    name: ClockName
    calendar: str
    target: timedelta
    started_at: AwareDatetime
    consumed: timedelta = timedelta(0)
    running_since: AwareDatetime | None = None
    paused_since: AwareDatetime | None = None
    paused_total: timedelta = timedelta(0)
    deadline: AwareDatetime | None = None
    breached_at: AwareDatetime | None = None
    stopped_at: AwareDatetime | None = None
    fired: dict[str, int] = Field(default_factory=dict, description="ladder step id -> times fired")


class Notice(Persisted):
    """One side effect in the outbox: a webhook to one endpoint, or a helpdesk reassignment.

    It stays here until delivered. A failed try makes it `undelivered` (visible on the status, the
    `UndeliveredNotices` search attribute and the timeline) and schedules the next try; once its
    retry window has passed, or the receiver refused it for good (4xx), it is `failed`, still
    listed, until an operator redelivers it.
    """

    key: str
    activity: Literal["notify", "cc_department_heads", "reassign"]
    type: str
    endpoint: str
    deliver: DeliverInput | None = None
    reassign: ReassignInput | None = None
    created_at: AwareDatetime
    next_attempt_at: AwareDatetime
    give_up_at: AwareDatetime
    attempts: int = 0
    last_error: str | None = None
    status: Literal["pending", "undelivered", "failed"] = "pending"


class TicketState(Persisted):
    """Everything the decisions need, and nothing that grows without bound."""

    schema_version: int = SCHEMA_VERSION
    route: RouteDecision
    state: State
    resume_state: State | None = None
    tier: int
    department: str
    priority: Priority
    assignee: str | None = None
    queue: str | None = None
    clocks: dict[ClockName, Clock] = Field(default_factory=dict)
    tier_entered_at: AwareDatetime
    tiers_visited: list[int] = Field(default_factory=list)
    departments_visited: list[str] = Field(default_factory=list)
    escalations: int = 0
    breaches: int = 0
    reopens: int = 0
    refused: int = 0
    internal_errors: int = 0
    first_response_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None
    approvals: list[Approval] = Field(default_factory=list)
    self_service_until: AwareDatetime | None = None
    outbox: list[Notice] = Field(default_factory=list)
    notice_seq: int = 0
    delivered: int = 0
    dropped: int = 0
    applied_keys: list[str] = Field(default_factory=list)
    # key -> fingerprint of the body first applied under it (only keys sent with one; patch
    # `api-idem-body-v1`), bounded with `applied_keys`
    applied_digests: dict[str, str] = Field(default_factory=dict)
    # update id -> [field, reason, body fingerprint or ""] of the last MAX_KEYS updates the ticket refused (patch
    # `api-refused-keys-v1`): the same id again gets the same refusal, also after continue-as-new
    refused_keys: dict[str, list[str]] = Field(default_factory=dict)


class PolicyRef(Persisted):
    """The frozen policy a ticket runs under, as data (decoded, never re-judged by newer checks)."""

    version: str
    fingerprint: str
    document: dict[str, Any]
    store_events: bool = Field(default=True, description="the worker that opened it writes the record store")

    @model_validator(mode="after")
    def _shared_document(self) -> PolicyRef:
        # One copy of each policy document per worker, not one per open ticket (about 38 KiB each):
        # the fingerprint is the document's hash, so the shared copy is the same data.
        self.document = _DOCUMENTS.setdefault(self.fingerprint, self.document)
        if len(_DOCUMENTS) > _DOCUMENTS_MAX:
            _DOCUMENTS.pop(next(iter(_DOCUMENTS)))
        return self


# Policy documents by fingerprint, shared by the tickets of a worker (read-only once stored).
_DOCUMENTS: dict[str, dict[str, Any]] = {}
_DOCUMENTS_MAX = 64


class StoreCarry(Persisted):
    """Where the ticket's record in the store stands, carried across continue-as-new."""

    next_seq: int = Field(default=0, description="events 0..next_seq-1 of this life are numbered (stored or pending)")
    opened_at: AwareDatetime | None = None
    complete: bool = Field(default=True, description="false: earlier runs ran before the store and are not in it")
    pending: list[StoredEvent] = Field(
        default_factory=list, description="numbered, not stored yet (the database was down at continue-as-new)"
    )


class Carried(Persisted):
    """The internal second argument of a continued run: never part of the public ticket."""

    schema_version: int = SCHEMA_VERSION
    policy: PolicyRef
    state: TicketState
    runs: int = Field(default=1, description="runs of this ticket so far, this one included")
    store: StoreCarry | None = None
