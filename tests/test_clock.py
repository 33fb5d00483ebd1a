"""Business-time arithmetic: properties over many calendars and instants, plus DST and holiday cases."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.policy import Calendar, Period
from workflows.clock import add_business_time, business_time_between, is_working_time

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = Calendar(
    timezone="Europe/Berlin",
    hours={
        d: [Period(start=time(9), end=time(12, 30)), Period(start=time(13, 30), end=time(17))]
        for d in ("mon", "tue", "wed", "thu", "fri")
    },
    holidays=[date(2027, 5, 17), date(2026, 12, 24)],
)
NEW_YORK = Calendar(
    timezone="America/New_York",
    hours={d: [Period(start=time(8), end=time(18))] for d in ("mon", "tue", "wed", "thu", "fri", "sat")},
)
ALWAYS = Calendar(always_open=True)

instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC))
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=200)).map(
    lambda d: timedelta(seconds=int(d.total_seconds()))
)
calendars = st.sampled_from([OFFICE, NEW_YORK, ALWAYS])


@settings(max_examples=150, deadline=None)
@given(cal=calendars, start=instants, a=durations, b=durations)
def test_adding_business_durations_composes(cal: Calendar, start: datetime, a: timedelta, b: timedelta) -> None:
    assert add_business_time(cal, add_business_time(cal, start, a), b) == add_business_time(cal, start, a + b)


@settings(max_examples=150, deadline=None)
@given(cal=st.sampled_from([OFFICE, NEW_YORK]), start=instants, target=durations.filter(lambda d: d > timedelta(0)))
def test_a_deadline_never_falls_in_non_working_time(cal: Calendar, start: datetime, target: timedelta) -> None:
    deadline = add_business_time(cal, start, target)
    assert is_working_time(cal, deadline)
    local = deadline.astimezone(ZoneInfo(cal.timezone))
    assert local.date() not in cal.holidays


@settings(max_examples=150, deadline=None)
@given(cal=calendars, start=instants, target=durations)
def test_elapsed_business_time_to_the_deadline_equals_the_target(
    cal: Calendar, start: datetime, target: timedelta
) -> None:
    assert business_time_between(cal, start, add_business_time(cal, start, target)) == target


def at(y: int, mo: int, d: int, h: int, mi: int = 0, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=zone)


def test_friday_evening_to_tuesday_over_a_holiday_monday() -> None:
    # Whit Monday 2027-05-17 is a holiday: 5 minutes on Friday, then Tuesday 09:00.
    assert add_business_time(OFFICE, at(2027, 5, 14, 16, 55), timedelta(minutes=15)) == at(2027, 5, 18, 9, 10)
    # The lunch break does not count.
    assert add_business_time(OFFICE, at(2027, 5, 14, 16, 55), timedelta(hours=4)) == at(2027, 5, 18, 13, 55)


def test_spring_forward_day_counts_real_working_time() -> None:
    # 2027-03-28 is the DST change in Europe (a Sunday); Friday 16:00 + 2h lands Monday 10:00 local time.
    assert add_business_time(OFFICE, at(2027, 3, 26, 16), timedelta(hours=2)) == at(2027, 3, 29, 10)
    # A 24x7 calendar across the same change counts 24 real hours, i.e. 25 wall-clock hours locally.
    start = at(2027, 3, 27, 12)
    end = add_business_time(ALWAYS, start, timedelta(hours=24))
    assert end.astimezone(BERLIN).hour == 13


def test_period_across_the_fall_back_hour_is_one_hour_longer() -> None:
    night = Calendar(timezone="Europe/Berlin", hours={"sun": [Period(start=time(0), end=time(6))]})
    # 2027-10-31 (Sunday): clocks go from 03:00 back to 02:00, so 00:00-06:00 lasts 7 real hours.
    start = at(2027, 10, 31, 0)
    assert business_time_between(night, start, start + timedelta(hours=8)) == timedelta(hours=7)


def test_start_outside_hours_starts_counting_at_opening() -> None:
    assert add_business_time(OFFICE, at(2026, 11, 28, 10), timedelta(minutes=30)) == at(2026, 11, 30, 9, 30)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_business_time(OFFICE, datetime(2026, 1, 1), timedelta(hours=1))


def test_composition_through_a_closing_time() -> None:
    start = at(2026, 11, 30, 16)  # Monday
    to_close = add_business_time(OFFICE, start, timedelta(hours=1))
    assert to_close == at(2026, 11, 30, 17)
    assert add_business_time(OFFICE, to_close, timedelta(0)) == to_close
    assert add_business_time(OFFICE, to_close, timedelta(minutes=1)) == at(2026, 12, 1, 9, 1)
    assert add_business_time(OFFICE, start, timedelta(hours=1, minutes=1)) == at(2026, 12, 1, 9, 1)


# ---------------------------------------------------------------------- 24:00: open until midnight
LATE = Calendar.model_validate(
    {
        "timezone": "Europe/Berlin",
        "hours": {d: [{"start": "18:00", "end": "24:00"}] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    }
)
SANTIAGO = Calendar.model_validate(  # Chile moves its clocks at local midnight
    {"timezone": "America/Santiago", "hours": {d: [{"start": "20:00", "end": "24:00"}] for d in ("sat", "sun")}}
)


def test_a_period_can_end_at_midnight_and_keeps_its_last_minute() -> None:
    start = datetime(2026, 11, 24, 18, 0, tzinfo=BERLIN)
    assert add_business_time(LATE, start, timedelta(hours=6)) == datetime(2026, 11, 25, 0, 0, tzinfo=BERLIN)
    assert add_business_time(LATE, start, timedelta(hours=6, seconds=1)) == datetime(
        2026, 11, 25, 18, 0, 1, tzinfo=BERLIN
    )
    assert is_working_time(LATE, datetime(2026, 11, 25, 0, 0, tzinfo=BERLIN))  # closing instant: working time
    assert not is_working_time(LATE, datetime(2026, 11, 25, 18, 0, tzinfo=BERLIN))  # opening instant: not yet
    assert business_time_between(LATE, start, start + timedelta(days=1)) == timedelta(hours=6)


def test_midnight_ends_on_dst_days() -> None:
    # Berlin, 2026-10-25: 25 hours long; the evening period is still six hours of wall time.
    autumn = datetime(2026, 10, 24, 18, 0, tzinfo=BERLIN)
    assert business_time_between(LATE, autumn, autumn + timedelta(days=2)) == timedelta(hours=12)
    # Santiago, 2026-09-06 00:00 does not exist (clocks jump to 01:00): Saturday's period ends at the jump.
    saturday = datetime(2026, 9, 5, 20, 0, tzinfo=ZoneInfo("America/Santiago"))
    end = add_business_time(SANTIAGO, saturday, timedelta(hours=4))
    assert end.astimezone(UTC) == datetime(2026, 9, 6, 4, 0, tzinfo=UTC)
    assert add_business_time(SANTIAGO, saturday, timedelta(hours=5)) > end + timedelta(hours=12)


def test_policy_times_24_00_and_unquoted_yaml_times() -> None:
    import yaml

    cal = Calendar.model_validate(yaml.safe_load('hours: {mon: [{start: "18:00", end: "24:00"}]}'))
    assert cal.model_dump(mode="json")["hours"]["mon"] == [{"start": "18:00:00", "end": "24:00"}]
    for bad, why in (
        ('hours: {mon: [{start: "09:00", end: 17:00}]}', 'write times in quotes, e.g. "17:00"'),
        ('hours: {mon: [{start: "24:00", end: "24:00"}]}', "hour value is outside expected range"),
        ('hours: {mon: [{start: "18:00", end: "24:00"}, {start: "23:00", end: "23:30"}]}', "periods overlap"),
    ):
        with pytest.raises(ValueError, match=why):
            Calendar.model_validate(yaml.safe_load(bad))
