"""Business time for the review: on a ticket's calendar by name, wall time for a calendar the
policy no longer has (or one whose arithmetic fails), so one odd ticket never fails a review."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

from config.policy import Calendar
from workflows.clock import CalendarError, add_business_time, business_time_between


class Business:
    """Business time on a named calendar; wall time for a calendar it does not know.

    A span of more than two days is counted as its two partial ends plus whole UTC days, each day's
    working time computed once per calendar (business time is additive over a split): a ticket
    open for months costs the review days, not months, of calendar arithmetic at every look."""

    def __init__(self, calendars: Mapping[str, Calendar]) -> None:
        self._calendars = calendars
        self._days: dict[tuple[str, date], timedelta] = {}

    def between(self, calendar: str | None, start: datetime, end: datetime) -> timedelta:
        if end <= start:
            return timedelta(0)
        name = calendar or ""
        cal = self._calendars.get(name)
        if cal is None:
            return end - start
        try:
            if cal.always_open or end - start <= timedelta(days=2):
                return business_time_between(cal, start, end)
            first = datetime.combine(start.astimezone(UTC).date() + timedelta(days=1), time(), UTC)
            last = datetime.combine(end.astimezone(UTC).date(), time(), UTC)
            total = business_time_between(cal, start, first) + business_time_between(cal, last, end)
            day = first
            while day < last:
                key = (name, day.date())
                worked = self._days.get(key)
                if worked is None:
                    worked = self._days[key] = business_time_between(cal, day, day + timedelta(days=1))
                total += worked
                day += timedelta(days=1)
            return total
        except CalendarError:
            return end - start

    def add(self, calendar: str | None, start: datetime, duration: timedelta) -> datetime:
        cal = self._calendars.get(calendar or "")
        if cal is None:
            return start + duration
        try:
            return add_business_time(cal, start, duration)
        except CalendarError:
            return start + duration


Frozen = Mapping[tuple[str, int], Mapping[str, Calendar]]


class TicketCalendars:
    """Which calendars a ticket's business time is counted on: those its policy version froze for
    its holiday year (`store.review_models.PolicyCalendarsRow`; a neighbouring year's will do, each
    carries the holidays of the years around it), else the policy in force now."""

    def __init__(self, current: Mapping[str, Calendar], frozen: Frozen | None = None) -> None:
        self._current = Business(current)
        self._frozen = frozen or {}
        self._by_key: dict[tuple[str, int], Business] = {}
        text = json.dumps({k: v.model_dump(mode="json") for k, v in current.items()}, sort_keys=True, default=str)
        self.current_digest = hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def frozen_keys(self) -> list[tuple[str, int]]:
        return list(self._frozen)

    def frozen_for(self, policy_version: str | None, opened_at: datetime | None) -> Mapping[str, Calendar] | None:
        if policy_version is None or opened_at is None:
            return None
        year = opened_at.astimezone(UTC).year
        for y in (year, year - 1, year + 1):
            found = self._frozen.get((policy_version, y))
            if found is not None:
                return found
        return None

    def business(self, policy_version: str | None, opened_at: datetime | None) -> Business:
        frozen = self.frozen_for(policy_version, opened_at)
        if frozen is None or policy_version is None or opened_at is None:
            return self._current
        key = (policy_version, opened_at.astimezone(UTC).year)
        found = self._by_key.get(key)
        if found is None:
            found = self._by_key[key] = Business(frozen)
        return found
