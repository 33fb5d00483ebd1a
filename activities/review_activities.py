"""The review's side effects: reading the store for spikes, and the signed `review.spike` webhook."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import EndpointMissing, resolve_endpoint
from activities.http_errors import BENIGN, raise_for_status
from activities.webhooks import sign_headers
from config.policy import ChannelKind, PolicyError, load_policy_file
from config.settings import Settings
from workflows.messages import Person
from workflows.review_messages import (
    FindSpikesInput,
    FindSpikesResult,
    SendSpikeInput,
    SendSpikeResult,
    SpikeEvent,
    SpikeFound,
)

log = structlog.get_logger("review")
EVENT_TYPE = "review.spike"


def spike_event_id(department: str, day: object) -> str:
    """Stable per department and day: a receiver drops a repeat by it, whatever runs the check."""
    return f"msg_review-spike_{re.sub(r'[^A-Za-z0-9._-]', '-', department)[:100]}_{day}"


class ReviewActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    def all(self) -> list[object]:
        return [self.find_spikes, self.send_spike]

    @activity.defn(name="review_find_spikes")
    async def find_spikes(self, request: FindSpikesInput) -> FindSpikesResult:
        """Departments above their normal band yesterday or today (UTC days), from the record store."""
        return await asyncio.to_thread(self._find, request.now)

    def _find(self, now: datetime) -> FindSpikesResult:
        from review.query import calendars_of, counts_from_store
        from review.spikes import find_spikes
        from store.repository import shared_store

        s = self._settings
        today = now.astimezone(UTC).date()
        start = datetime.combine(today - timedelta(days=1), datetime.min.time(), UTC)
        store = shared_store(s.store_database_url)
        counts = counts_from_store(
            store, calendars_of(s.policy_path), day_start=start, baseline_days=s.review_spike_baseline_days, now=now
        )
        found = []
        for day in (today - timedelta(days=1), today):
            for spike in find_spikes(
                counts,  # type: ignore[arg-type]
                day,
                baseline_days=s.review_spike_baseline_days,
                sigma=s.review_spike_sigma,
                floor=s.review_spike_floor,
            ):
                found.append(SpikeFound.model_validate(spike.model_dump()))
        return FindSpikesResult(spikes=found)

    @activity.defn(name="review_send_spike")
    async def send_spike(self, request: SendSpikeInput) -> SendSpikeResult:
        """POST one signed `review.spike` event per endpoint to the department's head."""
        try:
            policy = load_policy_file(self._settings.policy_path)
        except PolicyError as err:
            raise ApplicationError(f"policy unreadable: {err.problems[:1]}", type="PolicyInvalid") from None
        dept = policy.departments.get(request.department)
        head = dept.head if dept else None
        targets: list[tuple[str, str]] = []
        if self._settings.webhook_url:
            targets.append(("settings", self._settings.webhook_url))
        else:
            for e in policy.notifications.endpoints:
                if e.channel != ChannelKind.webhook or (e.event_types and EVENT_TYPE not in e.event_types):
                    continue
                try:
                    found = resolve_endpoint(e.name, "webhook", self._settings, policy, None)
                except EndpointMissing as err:
                    log.warning("review.spike_endpoint_missing", endpoint=e.name, error=str(err))
                    continue
                if found.url:
                    targets.append((e.name, found.url))
        what = ", ".join(f"{s.measure} {s.count} (normal up to {s.upper:g})" for s in request.spikes)
        event = SpikeEvent(
            id=spike_event_id(request.department, request.day),
            occurred_at=request.occurred_at,
            department=request.department,
            day=request.day,
            recipients=[Person(role="department_head", id=head.id, email=head.email)] if head else [],
            reason=f"{request.department} on {request.day}: {what}",
            data={"spikes": [s.model_dump(mode="json") for s in request.spikes]},
        )
        body = event.model_dump_json()
        delivered = []
        for name, url in targets:
            headers = sign_headers(self._settings.webhook_secret.get_secret_value(), event.id, body)
            try:
                response = await self._http.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise ApplicationError(
                    f"endpoint {name} unreachable: {type(exc).__name__}",
                    type="DeliveryFailed",
                    category=BENIGN,
                ) from None
            raise_for_status(response, f"endpoint {name}")
            delivered.append(name)
        log.info("review.spike", department=request.department, day=str(request.day), endpoints=delivered)
        return SendSpikeResult(webhook_id=event.id, delivered_to=delivered)
