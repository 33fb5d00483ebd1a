"""The review as a table (terminal), CSV (one row per group) or JSON; and the period parser."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from review.aggregate import GroupMetrics, Review

MAX_PERIOD = timedelta(days=366)
_RELATIVE = re.compile(r"^(\d{1,4})([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


class PeriodError(ValueError):
    """A period the review cannot take; the message names the parameter and the reason."""


def parse_since(value: str, now: datetime, name: str = "since") -> datetime:
    """`30d`, `12h`, `2w` before now, or an RFC 3339 instant with a UTC offset."""
    text = value.strip()
    m = _RELATIVE.match(text)
    if m:
        amount = int(m[1])
        if amount == 0:
            raise PeriodError(f"{name}: must be more than zero")
        delta = timedelta(**{_UNITS[m[2]]: amount})
        if delta > MAX_PERIOD:
            raise PeriodError(f"{name}: at most {MAX_PERIOD.days} days")
        return now - delta
    return parse_instant(text, name)


def parse_instant(text: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"{name}: expected e.g. 30d, 12h, 2w or an RFC 3339 time, got {text[:40]!r}") from None
    if parsed.tzinfo is None:
        raise PeriodError(f"{name}: needs a UTC offset (e.g. 2026-11-01T00:00:00+00:00)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise PeriodError(f"{name}: out of range") from None


def period(since: str, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    start = parse_since(since, now)
    end = parse_instant(until, "until") if until else now
    if end <= start:
        raise PeriodError("until: must be after since")
    if end - start > MAX_PERIOD:
        raise PeriodError(f"since: the period is at most {MAX_PERIOD.days} days")
    return start, end


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h{minutes:02d}m" if days else f"{hours}h{minutes:02d}m"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


COLUMNS: list[tuple[str, str, Any]] = [
    # (CSV column, table header, value of a group)
    ("tickets", "tickets", lambda g: g.tickets),
    ("open_now", "open", lambda g: g.open_now),
    ("fr_breach_rate", "FR breach", lambda g: g.breaches["first_response"].breached.rate),
    ("fr_past_p50_s", "FR past p50", lambda g: g.breaches["first_response"].past_deadline.p50),
    ("fr_past_p90_s", "FR past p90", lambda g: g.breaches["first_response"].past_deadline.p90),
    ("res_breach_rate", "RES breach", lambda g: g.breaches["resolution"].breached.rate),
    ("res_past_p50_s", "RES past p50", lambda g: g.breaches["resolution"].past_deadline.p50),
    ("res_past_p90_s", "RES past p90", lambda g: g.breaches["resolution"].past_deadline.p90),
    ("escalation_rate", "escalated", lambda g: g.escalations.escalated.rate),
    ("functional_rate", "functional", lambda g: g.escalations.functional.rate),
    ("hierarchical_rate", "hierarchical", lambda g: g.escalations.hierarchical.rate),
    ("ladder_rate", "by ladder", lambda g: g.escalations.ladder.rate),
    ("manual_rate", "manual", lambda g: g.escalations.manual.rate),
    ("escalations", "escalations", lambda g: g.escalations.total),
    ("departments_per_ticket", "depts/ticket", lambda g: g.handoffs.departments_per_ticket),
    ("assignees_per_ticket", "assignees/ticket", lambda g: g.handoffs.assignees_per_ticket),
    ("resolved_first_tier_rate", "first tier", lambda g: g.resolved_in_first_tier.rate),
    ("reopen_rate", "reopened", lambda g: g.reopened.rate),
    ("tier0_deflection_rate", "deflected", lambda g: g.tier0_deflection.rate),
    ("first_response_p50_s", "FR p50", lambda g: g.first_response.p50),
    ("first_response_p90_s", "FR p90", lambda g: g.first_response.p90),
    ("resolution_p50_s", "RES p50", lambda g: g.resolution.p50),
    ("resolution_p90_s", "RES p90", lambda g: g.resolution.p90),
    ("paused_p50_s", "paused p50", lambda g: g.paused_seconds.p50),
]


def _table_cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column.endswith("_rate"):
        return _pct(value)
    if column.endswith("_s"):
        return _dur(value)
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _rows(review: Review) -> list[GroupMetrics]:
    return [*review.groups, review.overall]


def to_csv(review: Review) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["group_by", "group", *(c for c, _, _ in COLUMNS)])
    for g in _rows(review):
        values = [get(g) for _, _, get in COLUMNS]
        writer.writerow([review.group_by, g.key, *("" if v is None else v for v in values)])
    return buf.getvalue()


def to_table(review: Review) -> str:
    """Plain text for a terminal: the groups as columns (many metrics, few groups)."""
    groups = _rows(review)
    header = [f"{review.group_by}:" if review.group_by != "none" else "metric", *(g.key for g in groups)]
    lines = [list(header)]
    for column, title, get in COLUMNS:
        lines.append([title, *(_table_cell(column, get(g)) for g in groups)])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = [
        f"Review of tickets opened {review.since:%Y-%m-%d %H:%M} to {review.until:%Y-%m-%d %H:%M} UTC "
        "(durations in business time; see docs/review.md)",
        "",
    ]
    for i, row in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j]) for j, cell in enumerate(row)))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    out += ["", "At risk now: " + ", ".join(f"{band} {n}" for band, n in review.at_risk.items())]
    for t in review.at_risk_tickets[:10]:
        out.append(f"  {t.ticket_id}  {t.department} tier {t.tier}  {t.clock} {t.used * 100:.0f}% used  {t.band}")
    if review.reasons:
        out += ["", "Top escalation reasons:"] + [f"  {r.count:5d}  {r.name}" for r in review.reasons]
    if review.ladder_steps:
        out += ["", "Ladder steps fired most:"] + [f"  {r.count:5d}  {r.name}" for r in review.ladder_steps]
    if review.time_in_tier:
        out += ["", "Time in tier (business time per ownership period):"]
        for tier in review.time_in_tier:
            out.append(
                f"  tier {tier.tier} {tier.department:<14} periods {tier.periods:5d}"
                f"  p50 {_dur(tier.business_seconds.p50)}  p90 {_dur(tier.business_seconds.p90)}"
                f"  p50 share of SLA {_pct(tier.share_of_sla.p50)}  breaches {tier.breaches}"
            )
    return "\n".join(out) + "\n"
