"""Review metrics on a generated set of tickets whose answers are known, and their properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.policy import Calendar
from review.aggregate import GROUP_BYS, percentile, review
from review.rows import EventRow, TicketFacts
from review.spikes import find_spikes
from tests.review_data import NOW, SINCE, generate

ALWAYS = {"always": Calendar(always_open=True)}
UNTIL = NOW - timedelta(days=1)  # the period ends before the open tickets of known SLA share were opened


@pytest.fixture(scope="module")
def generated() -> tuple[list[TicketFacts], object]:
    return generate(300)


def close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) < 1e-6


def test_known_answers_overall(generated: tuple[list[TicketFacts], object]) -> None:
    tickets, ex = generated
    r = review(tickets, ALWAYS, since=SINCE, until=UNTIL, now=NOW)
    o = r.overall
    assert o.tickets == 300 == sum(ex.tickets.values())  # type: ignore[attr-defined]
    fr, res = o.breaches["first_response"], o.breaches["resolution"]
    assert (fr.breached.count, fr.breached.of) == (sum(ex.fr_breached.values()), sum(ex.fr_started.values()))  # type: ignore[attr-defined]
    assert (res.breached.count, res.breached.of) == (sum(ex.res_breached.values()), sum(ex.res_started.values()))  # type: ignore[attr-defined]
    assert fr.breached.count > 20 and res.breached.count > 10  # the set exercises both
    assert close(fr.past_deadline.p50, percentile(ex.fr_past, 50))  # type: ignore[attr-defined]
    assert close(fr.past_deadline.p90, percentile(ex.fr_past, 90))  # type: ignore[attr-defined]
    assert close(res.past_deadline.p90, percentile(ex.res_past, 90))  # type: ignore[attr-defined]
    e = o.escalations
    assert e.escalated.count == sum(ex.escalated.values())  # type: ignore[attr-defined]
    assert (e.functional.count, e.hierarchical.count) == (ex.functional, ex.hierarchical)  # type: ignore[attr-defined]
    assert (e.ladder.count, e.manual.count) == (ex.ladder, ex.manual)  # type: ignore[attr-defined]
    assert {x.name: x.count for x in r.reasons} == dict(ex.reasons)  # type: ignore[attr-defined]
    assert [x.name for x in r.reasons] == [k for k, _ in ex.reasons.most_common()]  # type: ignore[attr-defined]
    assert {x.name: x.count for x in r.ladder_steps} == dict(ex.ladder_steps)  # type: ignore[attr-defined]
    assert (o.tier0_deflection.count, o.tier0_deflection.of) == (ex.deflected, ex.offered)  # type: ignore[attr-defined]
    assert (o.reopened.count, o.reopened.of) == (ex.reopened, ex.resolved)  # type: ignore[attr-defined]
    assert (o.resolved_in_first_tier.count, o.resolved_in_first_tier.of) == (
        ex.resolved_first_tier,  # type: ignore[attr-defined]
        ex.resolved_humans,  # type: ignore[attr-defined]
    )
    assert o.handoffs.more_than_one_department.count == ex.multi_department  # type: ignore[attr-defined]
    assert o.handoffs.more_than_one_department.of == ex.humans  # type: ignore[attr-defined]
    assert o.first_response.n == len(ex.first_response)  # type: ignore[attr-defined]
    assert close(o.first_response.p50, percentile(ex.first_response, 50))  # type: ignore[attr-defined]
    assert close(o.first_response.p90, percentile(ex.first_response, 90))  # type: ignore[attr-defined]
    assert o.resolution.n == len(ex.resolution)  # type: ignore[attr-defined]
    assert close(o.resolution.p50, percentile(ex.resolution, 50))  # type: ignore[attr-defined]
    assert close(o.resolution.p90, percentile(ex.resolution, 90))  # type: ignore[attr-defined]
    assert close(o.paused_seconds.p50, percentile(ex.paused, 50))  # type: ignore[attr-defined]
    assert {k: v for k, v in r.at_risk.items() if v} == dict(ex.at_risk)  # type: ignore[attr-defined]
    listed = [t for t in r.at_risk_tickets]
    assert len(listed) == sum(ex.at_risk.values())  # type: ignore[attr-defined]
    assert all(t.timeline == f"/tickets/{t.ticket_id}/timeline?format=md" for t in listed)
    assert [t.used for t in listed] == sorted((t.used for t in listed), reverse=True)
    for row in r.time_in_tier:
        want = ex.time_in_tier[(row.tier, row.department)]  # type: ignore[attr-defined]
        assert row.periods == len(want), (row.tier, row.department)
        assert close(row.business_seconds.p50, percentile(want, 50)), (row.tier, row.department)
        assert close(row.business_seconds.p90, percentile(want, 90)), (row.tier, row.department)
    assert sum(p.opened for p in r.series) == 300
    assert len(r.series) == 30  # calendar days touched by the period (partial first and last days)


def test_known_answers_by_department_and_policy(generated: tuple[list[TicketFacts], object]) -> None:
    tickets, ex = generated
    r = review(tickets, ALWAYS, since=SINCE, until=UNTIL, now=NOW, group_by="department")
    by = {g.key: g for g in r.groups}
    assert set(by) == set(ex.tickets)  # type: ignore[attr-defined]
    for dept, g in by.items():
        assert g.tickets == ex.tickets[dept]  # type: ignore[attr-defined]
        assert g.breaches["first_response"].breached.count == ex.fr_breached[dept]  # type: ignore[attr-defined]
        assert g.breaches["resolution"].breached.count == ex.res_breached[dept]  # type: ignore[attr-defined]
        assert g.escalations.escalated.count == ex.escalated[dept]  # type: ignore[attr-defined]
        assert close(g.escalations.escalated.rate, ex.escalated[dept] / ex.tickets[dept])  # type: ignore[attr-defined]
    r = review(tickets, ALWAYS, since=SINCE, until=UNTIL, now=NOW, group_by="policy_version")
    assert {g.key: g.tickets for g in r.groups} == dict(ex.by_policy)  # type: ignore[attr-defined]


def test_business_time_on_an_office_calendar() -> None:
    """Opened Friday 16:00 Berlin, acknowledged Monday 10:00: 1 h Friday + 1 h Monday of business time."""
    office = Calendar.model_validate(
        {
            "timezone": "Europe/Berlin",
            "hours": {d: [{"start": "09:00", "end": "17:00"}] for d in ("mon", "tue", "wed", "thu", "fri")},
        }
    )
    fri = datetime(2026, 11, 6, 15, 0, tzinfo=UTC)  # 16:00 in Berlin
    mon = datetime(2026, 11, 9, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
    rows = [
        EventRow(
            at=fri, kind="ticket_opened", actor="source:x", detail={"policy_version": "v", "opened_at": fri.isoformat()}
        ),
        EventRow(
            at=fri, kind="routed", detail={"tier": 1, "department": "d", "calendar": "office", "priority": "high"}
        ),
        EventRow(at=fri, kind="tier_entered", detail={"tier": 1, "department": "d"}),
        EventRow(
            at=fri,
            kind="sla_started",
            detail={
                "clock": "first_response",
                "target": "1:30:00",
                "deadline": (mon - timedelta(minutes=30)).isoformat(),
            },
        ),
        EventRow(at=mon - timedelta(minutes=30), kind="sla_breached", detail={"clock": "first_response"}),
        EventRow(at=mon, kind="acknowledged", actor="agent:ann"),
    ]
    t = TicketFacts(ticket_id="B-1", events=rows)
    r = review([t], {"office": office}, since=fri - timedelta(days=1), until=mon, now=mon + timedelta(days=1))
    assert r.overall.first_response.p50 == 7200
    assert r.overall.breaches["first_response"].past_deadline.p50 == 1800
    # An unknown calendar (policy changed since) counts wall time instead of failing.
    r = review([t], {}, since=fri - timedelta(days=1), until=mon, now=mon + timedelta(days=1))
    assert r.overall.first_response.p50 == (mon - fri).total_seconds()


def test_empty_period_and_tickets_without_events() -> None:
    r = review([], ALWAYS, since=SINCE, until=NOW, now=NOW, group_by="department")
    assert r.overall.tickets == 0 and r.overall.breaches["first_response"].breached.rate is None
    assert r.groups == [] and r.at_risk_tickets == [] and len(r.series) == 31
    bare = [TicketFacts(ticket_id="E-1", opened_at=NOW - timedelta(days=1)), TicketFacts(ticket_id="E-2")]
    r = review(bare, ALWAYS, since=SINCE, until=NOW + timedelta(seconds=1), now=NOW, group_by="tier")
    assert r.overall.tickets == 2 and r.overall.first_response.n == 0
    with pytest.raises(ValueError, match="group_by"):
        review([], ALWAYS, since=SINCE, until=NOW, now=NOW, group_by="colour")
    with pytest.raises(ValueError, match="until"):
        review([], ALWAYS, since=NOW, until=SINCE, now=NOW)


def test_spike_above_the_normal_band() -> None:
    day = date(2026, 11, 20)
    counts = {("billing", day - timedelta(days=i), "escalations"): 2 + i % 2 for i in range(1, 29)}
    counts[("billing", day, "escalations")] = 12
    counts[("support", day, "escalations")] = 3  # below the floor
    counts.update({("technical", day - timedelta(days=i), "breaches"): 10 for i in range(1, 29)})
    counts[("technical", day, "breaches")] = 10  # its normal
    spikes = find_spikes(counts, day)
    assert [(s.department, s.measure, s.count) for s in spikes] == [("billing", "escalations", 12)]
    assert spikes[0].upper < 12
    assert find_spikes({}, day) == []


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=29), min_size=0, max_size=40),
    st.sampled_from(GROUP_BYS),
    st.randoms(use_true_random=False),
)
def test_properties(picks: list[int], group_by: str, rnd: object) -> None:
    """Groups partition the tickets; rates are shares; p50 <= p90; row order within a ticket's
    same-instant rows and the order of tickets change nothing."""
    tickets, _ = generate(30, seed=1)
    chosen = [tickets[i] for i in picks]
    a = review(chosen, ALWAYS, since=SINCE, until=UNTIL, now=NOW, group_by=group_by)
    assert sum(g.tickets for g in a.groups) == (a.overall.tickets if group_by != "none" else 0)
    for g in [a.overall, *a.groups]:
        for c in g.breaches.values():
            assert c.breached.rate is None or 0 <= c.breached.rate <= 1
            if c.past_deadline.p50 is not None:
                assert c.past_deadline.p90 is not None and c.past_deadline.p50 <= c.past_deadline.p90
        assert g.escalations.escalated.count <= g.tickets
    shuffled = list(chosen)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    b = review(shuffled, ALWAYS, since=SINCE, until=UNTIL, now=NOW, group_by=group_by)
    assert a.model_dump() == b.model_dump()


def test_a_large_set_stays_fast() -> None:
    import time

    tickets, _ = generate(3000, seed=3)
    started = time.monotonic()
    r = review(tickets, ALWAYS, since=SINCE, until=UNTIL, now=NOW, group_by="department")
    assert r.overall.tickets == 3000
    assert time.monotonic() - started < 60  # generous: shared 2-core machine


def test_table_csv_and_periods(generated: tuple[list[TicketFacts], object]) -> None:
    import csv
    import io

    from review.render import PeriodError, period, to_csv, to_table

    tickets, ex = generated
    r = review(tickets, ALWAYS, since=SINCE, until=UNTIL, now=NOW, group_by="department")
    rows = list(csv.DictReader(io.StringIO(to_csv(r))))
    assert [x["group"] for x in rows] == ["billing", "support", "technical", "all"]
    assert int(rows[-1]["tickets"]) == 300
    assert float(rows[0]["escalation_rate"]) == ex.escalated["billing"] / ex.tickets["billing"]  # type: ignore[attr-defined]
    text = to_table(r)
    assert "FR breach" in text and "billing" in text and "At risk now" in text
    assert period("30d", None, NOW) == (NOW - timedelta(days=30), NOW)
    assert period("2w", "2026-11-19T00:00:00+00:00", NOW)[1] == datetime(2026, 11, 19, tzinfo=UTC)
    for bad in ("0d", "30x", "9999d", "", "2026-11-01T00:00:00", "yesterday", "1" * 60):
        with pytest.raises(PeriodError):
            period(bad, None, NOW)
    with pytest.raises(PeriodError, match="until"):
        period("1d", "2020-01-01T00:00:00+00:00", NOW)
    for since, until in (
        ("0001-01-01T00:00:00+14:00", "0001-01-02T00:00:00+00:00"),
        ("9999-12-30T00:00:00+00:00", "9999-12-31T23:59:59-14:00"),
        ("0001-01-01T00:00:00+00:00", None),
    ):
        with pytest.raises(PeriodError):
            period(since, until, NOW)
    # The extreme ends of the calendar that are valid still give a review.
    start, end = period("0001-01-01T00:00:00+00:00", "0001-01-02T00:00:00+00:00", NOW)
    assert review([], ALWAYS, since=start, until=end, now=NOW).overall.tickets == 0
    start, end = period("9999-12-30T00:00:00+00:00", "9999-12-31T23:59:59+00:00", NOW)
    assert len(review([], ALWAYS, since=start, until=end, now=NOW).series) == 2


def test_durations_in_both_spellings() -> None:
    from workflows.durations import parse_duration

    assert parse_duration("1 day, 2:00:00") == parse_duration("P1DT2H") == timedelta(hours=26)
    assert parse_duration("0:30:00") == parse_duration("PT30M") == timedelta(minutes=30)
    assert parse_duration("PT1H30M15.5S") == timedelta(hours=1, minutes=30, seconds=15.5)
    assert parse_duration(90) == timedelta(seconds=90)
    for bad in ("P", "PT", "soon", None, True, "-1", ""):
        assert parse_duration(bad) is None


def test_rows_with_garbage_values_do_not_break_the_review() -> None:
    """Stored rows are the workflow's, but a review must never fail on one odd row."""
    at = NOW - timedelta(days=2)
    rows = [
        EventRow(at=at, kind="ticket_opened", detail={"policy_version": None, "opened_at": "not a time"}),
        EventRow(at=at, kind="routed", detail={"tier": "x", "department": None, "calendar": 5, "priority": None}),
        EventRow(at=at, kind="tier_entered", detail={"tier": [1], "department": {"a": 1}}),
        EventRow(at=at, kind="sla_started", detail={"clock": None, "target": "soon", "deadline": "later"}),
        EventRow(at=at, kind="sla_breached", detail={}),
        EventRow(at=at, kind="escalated", detail={"kind": None, "reason": None, "rule": 7}),
        EventRow(at=at, kind="reassigned", detail={"from": "x", "to": ["y"]}),
        EventRow(at=at, kind="sla_paused", detail={}),
        EventRow(at=at, kind="sla_resumed", detail={"deadlines": "none"}),
        EventRow(at=at, kind="priority_changed", detail={"deadlines_after": "x"}),
        EventRow(at=at, kind="priority_changed", detail={"deadlines_after": None}),
        EventRow(at=at, kind="resolved", actor=None, detail={}),
    ]
    for group_by in GROUP_BYS:
        r = review(
            [TicketFacts(ticket_id="X", events=rows)], ALWAYS, since=SINCE, until=NOW, now=NOW, group_by=group_by
        )
        assert r.overall.tickets == 1
