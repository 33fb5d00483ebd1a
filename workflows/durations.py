"""Durations in one notation, ISO 8601 in hours, minutes and seconds, written and read here only.

Every duration the product writes (timeline rows, status, summaries, refusal reasons, exports) is
`iso_duration`; every duration it reads back is `parse_duration`. Rows written by 1.0.0 and earlier
carry two older spellings, Python's `str(timedelta)` in a clock's `target` and `0h20m` in a guard's refusal
reason: `parse_duration` and `rewrite_legacy_prose` read them, so old histories and stored rows
read the same as new ones. Pure; passed through the workflow sandbox.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import PlainSerializer


def iso_duration(value: timedelta) -> str:
    """ISO 8601 duration in hours, minutes and seconds: `PT1H30M`, `PT24H`, `PT0.5S`, `PT0S`.

    No days: a policy's `P1D` is 24 hours of business time, not a calendar day, so it is written
    `PT24H`."""
    sign = "-" if value < timedelta(0) else ""
    micros = abs(value) // timedelta(microseconds=1)
    seconds, micros = divmod(micros, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = ""
    if hours:
        text += f"{hours}H"
    if minutes:
        text += f"{minutes}M"
    if seconds or micros:
        text += f"{seconds}.{micros:06d}".rstrip("0").rstrip(".") + "S"
    return f"{sign}PT{text or '0S'}"


# A duration read as pydantic reads any (ISO 8601, seconds), written in the one notation above.
Duration = Annotated[timedelta, PlainSerializer(iso_duration, return_type=str, when_used="json")]

_NUMBER = r"\d+(?:\.\d+)?"
_ISO = re.compile(
    rf"^(?P<sign>-)?P(?:(?P<d>{_NUMBER})D)?(?:T(?:(?P<h>{_NUMBER})H)?(?:(?P<m>{_NUMBER})M)?(?:(?P<s>{_NUMBER})S)?)?$"
)
# Python's `str(timedelta)`: `0:15:00`, `1 day, 2:00:00`, `-1 day, 23:59:59.5` (rows before 1.0).
_PYTHON = re.compile(r"^(?:(?P<days>-?\d+) days?, )?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?)$")
# A guard's prose duration in a refusal reason: `0h20m` (rows before 1.0).
_PROSE = re.compile(r"\b(\d+)h(\d{2})m\b")


def parse_duration(text: Any) -> timedelta | None:
    """A duration as this product writes it (`PT1H30M`) or wrote it before 1.0 (`1 day, 2:00:00`),
    any ISO 8601 duration in days, hours, minutes and seconds (`P1DT2H`), or a number of seconds.
    None when `text` is none of these."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return timedelta(seconds=float(text))
    if not isinstance(text, str):
        return None
    text = text.strip()
    iso = _ISO.match(text)
    if iso and any(iso[part] for part in "dhms") and not text.endswith("T"):
        value = timedelta(
            days=float(iso["d"] or 0),
            hours=float(iso["h"] or 0),
            minutes=float(iso["m"] or 0),
            seconds=float(iso["s"] or 0),
        )
        return -value if iso["sign"] else value
    old = _PYTHON.match(text)
    if old:
        return timedelta(
            days=int(old["days"] or 0), hours=int(old["h"]), minutes=int(old["m"]), seconds=float(old["s"])
        )
    return None


def as_iso(text: str) -> str | None:
    """`text` in the one notation (`0:15:00` -> `PT15M`); None when it is not a duration."""
    value = parse_duration(text)
    return iso_duration(value) if value is not None else None


def rewrite_legacy_prose(text: str) -> str:
    """A sentence with the pre-1.0 guards' durations (`needs 0h20m`) in the one notation (`PT20M`)."""
    return _PROSE.sub(lambda m: iso_duration(timedelta(hours=int(m[1]), minutes=int(m[2]))), text)
