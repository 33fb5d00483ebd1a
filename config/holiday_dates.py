"""Public holidays of a calendar's country, expanded into explicit dates.

Workflows must not consult the `holidays` package while running (its data changes between
releases, which would break replay), so a ticket's frozen policy carries the dates of the years
around its opening (`holiday_years`), and loading checks that those years can be expanded.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from config.model import Policy
from config.schema import Calendar


def holiday_years(year: int) -> range:
    """The years whose holidays a ticket opened in `year` carries: the year before to two after."""
    return range(year - 1, year + 3)


def holiday_problems(policy: Policy, today: date | None = None) -> list[str]:
    """Country holidays the `holidays` package cannot expand (unknown country or subdivision, or
    no data for a year a ticket opened `today` would carry).

    Checked at load, so `policy check` and the worker's start refuse them instead of every new
    ticket failing later while its policy is frozen.
    """
    import holidays as holidays_lib

    years = list(holiday_years((today or datetime.now(UTC).date()).year))
    problems = []
    for name, cal in policy.calendars.items():
        ch = cal.country_holidays
        if ch is None:
            continue
        try:
            holidays_lib.country_holidays(ch.country, subdiv=ch.subdivision, years=years)
        except (NotImplementedError, KeyError, ValueError) as exc:
            place = f"calendars.{name}.country_holidays"
            where = f"{ch.country}/{ch.subdivision or '-'}"
            problems.append(f"{place}: {where} is not known to the holidays package ({exc})")
    return problems


def resolve_holidays(policy: Policy, years: range) -> Policy:
    """Expand each calendar's country holidays into explicit dates for `years`."""
    import holidays as holidays_lib

    calendars: dict[str, Calendar] = {}
    for name, cal in policy.calendars.items():
        if cal.country_holidays is None:
            calendars[name] = cal
            continue
        found = holidays_lib.country_holidays(
            cal.country_holidays.country, subdiv=cal.country_holidays.subdivision, years=list(years)
        )
        dates = sorted(set(cal.holidays) | set(found.keys()))
        calendars[name] = cal.model_copy(update={"holidays": dates, "country_holidays": None})
    return policy.model_copy(update={"calendars": calendars})
