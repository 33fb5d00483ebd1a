"""The activities as the workflows call them: name, input and output, and typed call options.

Workflows call activities by method reference (`workflow.execute_activity_method(
TicketActivityInterface.notify, ...)`), so that mypy checks the argument and the result, without
importing the activities themselves (HTTP clients, templates, the database stay out of workflow
code). The classes here only declare; `activities/` implements each method under the same activity
name (`tests/test_activity_interfaces.py` checks names and types agree). The names are in every
ticket's history: never rename one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import NoReturn, TypedDict

from temporalio import activity
from temporalio.common import RetryPolicy

from workflows.messages import (
    DeliverInput,
    DeliveryResult,
    DigestDeliverInput,
    LoadPolicyInput,
    PolicySnapshot,
    ReassignInput,
    ReassignResult,
    StoreBatch,
    StoreResult,
)
from workflows.review_messages import FindSpikesInput, FindSpikesResult, SendSpikeInput, SendSpikeResult


class ActivityOptions(TypedDict, total=False):
    """Timeouts and retries of an activity call (always a start-to-close timeout and a bounded policy)."""

    start_to_close_timeout: timedelta
    schedule_to_close_timeout: timedelta
    retry_policy: RetryPolicy


class LocalActivityOptions(ActivityOptions, total=False):
    local_retry_threshold: timedelta


def _declared_only() -> NoReturn:
    raise NotImplementedError("an interface: the worker runs the implementation in activities/")


class TicketActivityInterface:
    """Implemented by `activities.ticket_activities.TicketActivities`."""

    @activity.defn(name="load_policy")
    async def load_policy(self, request: LoadPolicyInput) -> PolicySnapshot:
        _declared_only()

    @activity.defn(name="notify")
    async def notify(self, request: DeliverInput) -> DeliveryResult:
        _declared_only()

    @activity.defn(name="cc_department_heads")
    async def cc_department_heads(self, request: DeliverInput) -> DeliveryResult:
        _declared_only()

    @activity.defn(name="reassign")
    async def reassign(self, request: ReassignInput) -> ReassignResult:
        _declared_only()

    @activity.defn(name="send_digest")
    async def send_digest(self, request: DigestDeliverInput) -> DeliveryResult:
        _declared_only()


class StoreActivityInterface:
    """Implemented by `activities.store_activities.StoreActivities`."""

    @activity.defn(name="store_events")
    async def store_events(self, batch: StoreBatch) -> StoreResult:
        _declared_only()


class ReviewActivityInterface:
    """Implemented by `activities.review_activities.ReviewActivities`."""

    @activity.defn(name="review_find_spikes")
    async def find_spikes(self, request: FindSpikesInput) -> FindSpikesResult:
        _declared_only()

    @activity.defn(name="review_send_spike")
    async def send_spike(self, request: SendSpikeInput) -> SendSpikeResult:
        _declared_only()
