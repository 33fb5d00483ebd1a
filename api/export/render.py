"""The audit timeline rendered as JSON, CSV or Markdown: the same normalized rows in each.

Markdown and CSV cells are made safe to open: table syntax, HTML and links shown as text,
invisible and direction-changing characters escaped, no cell a spreadsheet would run as a formula.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from typing import Any

from api.export.normalize import Entry, normalize_entry

COLUMNS = ["at", "source", "kind", "actor", "detail"]

_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})  # controls, bidi overrides, zero-width, separators
_MD_SPECIAL = re.compile(r"([\\|`\[<>&])")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _visible(text: str) -> str:
    """Characters that print nothing or reorder the line, as JSON escapes (`\\u202e`)."""
    return "".join(json.dumps(ch)[1:-1] if unicodedata.category(ch) in _INVISIBLE else ch for ch in text)


def _json_text(value: Any) -> str:
    """Compact JSON with readable Unicode; invisible and direction-changing characters escaped."""
    return _visible(json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")))


def detail_text(detail: dict[str, Any]) -> str:
    """The detail as `key=<JSON value>` pairs, keys sorted: one line, parseable back."""
    return " ".join(f"{k if _PLAIN_KEY.match(k) else _json_text(k)}={_json_text(v)}" for k, v in sorted(detail.items()))


def _md_cell(text: str) -> str:
    """Safe in a Markdown table cell: pipes, HTML, links and code spans are shown as text (CommonMark
    backslash escapes), line breaks and other invisible characters as `\\uXXXX` (UTF-16, as in JSON).
    Reading the raw file: `\\` + punctuation is that punctuation; `\\u` + 4 hex digits one code unit."""
    escaped = _MD_SPECIAL.sub(r"\\\1", text)
    return "".join(_utf16_escape(ch) if unicodedata.category(ch) in _INVISIBLE else ch for ch in escaped)


def _utf16_escape(ch: str) -> str:
    data = ch.encode("utf-16-be")
    return "".join(f"\\u{int.from_bytes(data[i : i + 2], 'big'):04x}" for i in range(0, len(data), 2))


def _csv_cell(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_timeline(
    ticket_id: str,
    entries: list[Entry],
    fmt: str,
    read_from: str | None = None,
    store: dict[str, Any] | None = None,
) -> str:
    """The same rows in JSON, CSV or Markdown (see `normalize_entry`). `read_from` (and `store`),
    when given, say where the rows were read (JSON fields, a Markdown line; CSV has only rows)."""
    rows = [normalize_entry(e) for e in entries]
    if fmt == "json":
        head: dict[str, Any] = {"ticket_id": ticket_id}
        if read_from is not None:
            head["read_from"] = read_from
        if store is not None:
            head["store"] = store
        return json.dumps({**head, "events": rows}, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)  # RFC 4180: CRLF; any field with CR, LF, comma or quote is quoted
        writer.writerow(COLUMNS)
        for e in rows:
            writer.writerow(
                [_csv_cell(e["at"]), e["source"], _csv_cell(e["kind"]), _csv_cell(e["actor"]), _json_text(e["detail"])]
            )
        return buf.getvalue()
    lines = [
        f"# Audit timeline: ticket {_md_cell(ticket_id)}",
        "",
        f"{len(rows)} events. Times in UTC; durations ISO 8601 (`PT1H30M`); details as `key=<JSON value>`.",
        "",
        *_source_lines(read_from, store),
        "| at (UTC) | source | event | actor | detail |",
        "|---|---|---|---|---|",
    ]
    for e in rows:
        cells = [e["at"], e["source"], e["kind"], e["actor"], detail_text(e["detail"])]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _source_lines(read_from: str | None, store: dict[str, Any] | None) -> list[str]:
    if read_from == "store" and store is not None:
        return [
            f"Read from the record store ({store.get('why') or 'Temporal no longer has the history'}): "
            f"life {_md_cell(store['life_id'])}, "
            f"{store['events_stored']} events stored{'' if store['complete'] else ' (earlier runs missing)'}, "
            f"closed {store['closed_at'] or 'not yet'}.",
            "",
        ]
    if read_from is not None:
        return [f"Read from: {read_from}.", ""]
    return []
