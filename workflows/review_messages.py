"""The contract of the review's spike check: the inputs and outputs of workflow `ReviewSpikeWatch`
and its activities, importable without importing the activities."""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from workflows.messages import Person


class ReviewMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)  # tolerant: carried across versions


class SpikeWatchState(ReviewMessage):
    """The watch's carried state: which department+day pairs have been announced already."""

    interval: timedelta = timedelta(minutes=15)
    sent: list[str] = Field(default_factory=list, description="'department|day' keys, the last 500")


class FindSpikesInput(ReviewMessage):
    now: AwareDatetime


class SpikeFound(ReviewMessage):
    department: str
    day: date
    measure: str
    count: int
    mean: float
    upper: float
    baseline_days: int


class FindSpikesResult(ReviewMessage):
    spikes: list[SpikeFound] = Field(default_factory=list)


class SpikeEvent(ReviewMessage):
    """The body of a `review.spike` webhook (docs/contract.md, additions)."""

    id: str = Field(description="webhook-id: msg_review-spike_<department>_<day>, one per department and day")
    type: str = "review.spike"
    occurred_at: AwareDatetime
    department: str
    day: date
    recipients: list[Person] = Field(default_factory=list)
    rule: str = "review.spike_check"
    reason: str
    data: dict[str, object] = Field(default_factory=dict)


class SendSpikeInput(ReviewMessage):
    department: str
    day: date
    spikes: list[SpikeFound]
    occurred_at: AwareDatetime


class SendSpikeResult(ReviewMessage):
    webhook_id: str
    delivered_to: list[str] = Field(default_factory=list)
