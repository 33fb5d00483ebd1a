"""Business-time arithmetic: the only place that knows what a working minute is.

Pure functions over aware datetimes; the workflow calls them with `workflow.now()`. Working periods
are written in the calendar's local wall time and converted to UTC day by day, so a period across a
DST change is as long as the wall clock says it really is, and holidays are skipped whole.
A period is treated as half-open at its start and closed at its end: a deadline may fall exactly
at closing time, never before opening.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from config.policy import MIDNIGHT_END, WEEKDAYS, Calendar

# A calendar with no working time in this many days is treated as broken rather than looped on.
_MAX_DAYS = 3 * 366


class CalendarError(ValueError):
    """The calendar has no working time within reach of the requested instant."""


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _local_wall(day: date, t: object, zone: ZoneInfo) -> datetime:
    # Non-existent local times (inside a spring-forward gap) resolve forward via fold=0 + UTC round trip.
    naive = datetime.combine(day, t)  # type: ignore[arg-type]
    return naive.replace(tzinfo=zone).astimezone(UTC)


def working_periods(cal: Calendar, start: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Yield the calendar's working periods (UTC) that end after `start`, in order."""
    _require_aware(start, "start")
    if cal.always_open:
        yield start.astimezone(UTC), datetime.max.replace(tzinfo=UTC)
        return
    zone = ZoneInfo(cal.timezone)
    holidays = set(cal.holidays)
    day = start.astimezone(zone).date() - timedelta(days=1)  # a period may begin the day before in UTC
    for _ in range(_MAX_DAYS):
        if day not in holidays:
            for period in sorted(cal.hours.get(WEEKDAYS[day.weekday()], []), key=lambda p: p.start):  # type: ignore[call-overload]
                begin = _local_wall(day, period.start, zone)
                if period.end == MIDNIGHT_END:  # the end of the day: midnight of the next one
                    end = _local_wall(day + timedelta(days=1), time(0), zone)
                else:
                    end = _local_wall(day, period.end, zone)
                if end > start:
                    yield begin, end
        day += timedelta(days=1)
    raise CalendarError(f"no working time within {_MAX_DAYS} days of {start.isoformat()}")


def add_business_time(cal: Calendar, start: datetime, duration: timedelta) -> datetime:
    """The instant at which `duration` of working time has passed since `start`."""
    _require_aware(start, "start")
    if duration < timedelta(0):
        raise ValueError("duration must not be negative")
    if duration == timedelta(0):
        return start
    if cal.always_open:  # in UTC: same-zone aware arithmetic in Python is wall-clock arithmetic
        return start.astimezone(UTC) + duration
    remaining = duration
    cursor = start.astimezone(UTC)
    for begin, end in working_periods(cal, cursor):
        cursor = max(cursor, begin)
        available = end - cursor
        if remaining <= available:
            return cursor + remaining
        remaining -= available
    raise CalendarError("unreachable")  # pragma: no cover - working_periods raises first


def business_time_between(cal: Calendar, start: datetime, end: datetime) -> timedelta:
    """Working time in [start, end]; zero when end is not after start."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    if end <= start:
        return timedelta(0)
    if cal.always_open:
        return end.astimezone(UTC) - start.astimezone(UTC)
    total = timedelta(0)
    for begin, stop in working_periods(cal, start):
        if begin >= end:
            break
        total += min(stop, end) - max(begin, start)
    return total


def is_working_time(cal: Calendar, instant: datetime) -> bool:
    """True inside a working period (opening instant excluded, closing instant included)."""
    if cal.always_open:
        return True
    for begin, end in working_periods(cal, instant - timedelta(microseconds=1)):
        return begin < instant <= end
    return False  # pragma: no cover
