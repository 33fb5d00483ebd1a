"""The audit export of an escalated ticket, from its Temporal history, checked event by event."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.testing import WorkflowEnvironment

from api.export import audit_from_history, render_timeline
from config.policy import load_policy_file
from tests.helpers import AGENT, ticket, until
from tests.receiver import Receiver

NOISE = {
    "search_attributes",
    "timer_started",
    "timer_fired",
    "notification_delivered",
    "helpdesk_updated",
    "store_events_scheduled",
}


def key(e: dict[str, Any]) -> tuple[Any, ...]:
    d = e["detail"]
    kind = e["kind"]
    if kind.endswith("_scheduled") and kind != "load_policy_scheduled":
        return (e["source"], kind, d.get("event_type") or d.get("queue"), d.get("rule"))
    if kind in ("ladder_step",):
        return (e["source"], kind, d.get("rule"))
    if kind in ("sla_started", "sla_breached"):
        return (e["source"], kind, d.get("clock"))
    if kind == "tier_entered":
        return (e["source"], kind, d.get("tier"))
    if kind in ("update_accepted", "update_completed", "signal_received"):
        return (e["source"], kind, d.get("action"), e["actor"])
    if kind == "action_rejected":
        return (e["source"], kind, d.get("field"), e["actor"])
    if kind == "escalated":
        return (e["source"], kind, d.get("from_tier"), d.get("to_tier"), d.get("rule"))
    return (e["source"], kind)


async def test_audit_export_of_an_escalated_ticket(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    async with make_harness(ts_env, receiver) as h:
        tickets = h.tickets
        t = ticket(priority="urgent")  # tier 1: first response 30 min, resolution 8 h
        await tickets.open(t)
        await ts_env.sleep(timedelta(minutes=25))
        await tickets.act(t.ticket_id, "acknowledge", {"actor": AGENT, "note": ODD_NOTE})
        await tickets.signal(
            t.ticket_id, "escalate", {"actor": AGENT, "kind": "functional", "department": "nowhere", "reason": "x"}
        )
        # Resolution breach at 8 h: escalate to tier 2, CC the head; resolved at 8h05, before tier 2 must respond.
        await ts_env.sleep(timedelta(hours=7, minutes=40))
        await tickets.act(t.ticket_id, "resolve", {"actor": AGENT, "resolution": "fixed"})
        await until(lambda: receiver.events("ticket.resolved"))
        await ts_env.sleep(timedelta(seconds=1))
        entries = await audit_from_history(h.client, f"ticket-{t.ticket_id}")
        policy_path = h.settings.policy_path
        policy_file = load_policy_file(policy_path)

    rule_fr_warn, rule_res_warn = "ladders.first_response[0] (fr-warning)", "ladders.resolution[0] (res-warning)"
    rule_res_breach = "ladders.resolution[1] (res-breach)"
    decisions = [
        key(e)
        for e in entries
        if (e["kind"] not in NOISE and not e["kind"].endswith("_completed")) or e["kind"] == "update_completed"
    ]
    assert decisions == [
        ("history", "workflow_started"),
        ("workflow", "ticket_opened"),
        ("workflow", "routed"),
        ("workflow", "sla_started", "first_response"),
        ("workflow", "sla_started", "resolution"),
        ("workflow", "tier_entered", 1),
        ("workflow", "ladder_step", rule_fr_warn),
        ("history", "notify_scheduled", "sla.warning", rule_fr_warn),
        ("workflow", "acknowledged"),
        ("history", "update_accepted", "acknowledge", "agent:ann"),
        ("history", "update_completed", "acknowledge", "agent:ann"),
        ("history", "signal_received", "escalate", "agent:ann"),
        ("workflow", "action_rejected", "department", "agent:ann"),
        ("workflow", "ladder_step", rule_res_warn),
        ("history", "notify_scheduled", "sla.warning", rule_res_warn),
        ("workflow", "sla_breached", "resolution"),
        ("workflow", "ladder_step", rule_res_breach),
        ("workflow", "sla_started", "first_response"),
        ("workflow", "sla_started", "resolution"),
        ("workflow", "tier_entered", 2),
        ("workflow", "escalated", 1, 2, rule_res_breach),
        ("history", "notify_scheduled", "sla.breached", rule_res_breach),
        ("history", "notify_scheduled", "ticket.escalated", rule_res_breach),
        ("history", "cc_department_heads_scheduled", "ticket.cc", rule_res_breach),
        ("workflow", "resolved"),
        ("history", "update_accepted", "resolve", "agent:ann"),
        ("history", "update_completed", "resolve", "agent:ann"),
        ("history", "notify_scheduled", "ticket.resolved", None),
    ]

    by_kind = {e["kind"]: e for e in entries}
    opened = datetime.fromisoformat(entries[0]["at"])

    def at(e: dict[str, Any]) -> timedelta:
        return datetime.fromisoformat(e["at"]) - opened

    steps = [e for e in entries if e["kind"] == "ladder_step"]
    assert timedelta(minutes=22, seconds=29) < at(steps[0]) < timedelta(minutes=22, seconds=31)  # 75% of 30 min
    assert timedelta(hours=6, minutes=23) < at(steps[1]) < timedelta(hours=6, minutes=25)  # 80% of 8 h
    assert timedelta(hours=7, minutes=59) < at(steps[2]) < timedelta(hours=8, minutes=1)
    # The policy is loaded by a local activity: its result is a marker in history.
    assert by_kind["load_policy_completed"]["detail"]["local"] is True
    version = by_kind["load_policy_completed"]["detail"]["policy_version"]
    assert version.startswith("2026.11-default+") and by_kind["ticket_opened"]["detail"]["policy_version"] == version
    # One version string: what `policy check` prints for the file the worker read, with its name.
    assert version == policy_file.version_label(policy_path) and version.endswith(f" ({policy_path.name})")
    rejected = by_kind["action_rejected"]["detail"]
    assert rejected["reason"].startswith("unknown department 'nowhere'") and rejected["via"] == "signal"
    escalated = by_kind["escalated"]["detail"]
    assert (escalated["kind"], escalated["department"], escalated["reason"]) == (
        "hierarchical",
        "support",
        "resolution SLA after breach",
    )
    cc = by_kind["cc_department_heads_scheduled"]["detail"]
    assert cc["cc"] == ["dana.head"]

    # Every notification scheduled was delivered once, first attempt, HTTP 200: outcome per event id.
    scheduled = {
        e["detail"]["event_id"] for e in entries if e["kind"] in ("notify_scheduled", "cc_department_heads_scheduled")
    }
    completed = [e["detail"] for e in entries if e["kind"] in ("notify_completed", "cc_department_heads_completed")]
    assert {c["event_id"] for c in completed} == scheduled and len(completed) == len(scheduled) == 6
    assert all(c["attempts"] == 1 and c["status_code"] == 200 for c in completed)
    # The search attributes in history show the state changes an auditor filters on in the Web UI.
    tiers = [
        e["detail"]["TicketTier"] for e in entries if e["kind"] == "search_attributes" and "TicketTier" in e["detail"]
    ]
    assert tiers == [1, 2]

    assert_same_rows(t.ticket_id, entries)
    markdown = render_timeline(t.ticket_id, entries, "md")
    assert "| workflow | escalated | system:escalation-policy |" in markdown
    assert all(e["actor"] for e in entries)  # an actor on every row
    durations = [e["detail"]["target"] for e in entries if e["kind"] == "sla_started"]
    assert durations == ["PT30M", "PT8H", "PT15M", "PT4H"]  # one notation
    assert not [e for e in entries if e["kind"] == "helpdesk_updated"]  # no helpdesk configured, none called
    assert "None" not in markdown and "{'" not in markdown  # JSON values, never Python reprs
    # The odd note survives every format unchanged, and cannot break the Markdown table.
    ack = next(e for e in entries if e["kind"] == "acknowledged")
    assert ack["detail"]["note"] == ODD_NOTE
    for line in markdown.splitlines()[6:]:
        assert len(_md_cells(line)) == 5, line


# Pipes, line breaks, HTML, a link, a code span, a right-to-left override, a zero-width space,
# a spreadsheet formula, astral-plane characters: what an agent may paste into a note.
ODD_NOTE = '=HYPERLINK("x") | a\nb\r\t<b>bold</b> [link](http://x) `code` \\ \u202eevil\u200b 😀 zoë "q"'


def _md_cells(line: str) -> list[str]:
    """Split a Markdown table row on unescaped pipes and undo the backslash escapes."""
    assert line.startswith("| ") and line.endswith(" |"), line
    cells = _split_escaped(line[2:-2])
    return [_md_unescape(c) for c in cells]


def _md_unescape(cell: str) -> str:
    out, i = "", 0
    while i < len(cell):
        if cell.startswith("\\u", i) and re.fullmatch(r"[0-9a-f]{4}", cell[i + 2 : i + 6]):
            units = [cell[i + 2 : i + 6]]
            i += 6
            while 0xD800 <= int(units[-1], 16) < 0xDC00 and cell.startswith("\\u", i):
                units.append(cell[i + 2 : i + 6])
                i += 6
            out += b"".join(int(u, 16).to_bytes(2, "big") for u in units).decode("utf-16-be")
        elif cell[i] == "\\":
            out += cell[i + 1]
            i += 2
        else:
            out += cell[i]
            i += 1
    return out


def _split_escaped(body: str) -> list[str]:
    cells, cur, i = [], "", 0
    while i < len(body):
        if body[i] == "\\":
            cur += body[i : i + 2]
            i += 2
        elif body.startswith(" | ", i):
            cells.append(cur)
            cur, i = "", i + 3
        else:
            cur += body[i]
            i += 1
    return [*cells, cur]


def _parse_detail(text: str) -> dict[str, Any]:
    """`key=<JSON>` pairs back into an object."""
    decoder, out, i = json.JSONDecoder(), {}, 0
    while i < len(text):
        if text[i] == '"':
            key, i = decoder.raw_decode(text, i)
        else:
            end = text.index("=", i)
            key, i = text[i:end], end
        assert text[i] == "="
        value, i = decoder.raw_decode(text, i + 1)
        out[key] = value
        i += 1 if i < len(text) and text[i] == " " else 0
    return out


def assert_same_rows(ticket_id: str, entries: list[dict[str, Any]]) -> None:
    """The JSON, CSV and Markdown timelines hold the same rows, value for value, in the same order."""
    from_json = json.loads(render_timeline(ticket_id, entries, "json"))["events"]
    assert len(from_json) == len(entries) > 0
    table = list(csv.reader(io.StringIO(render_timeline(ticket_id, entries, "csv"))))
    assert table[0] == ["at", "source", "kind", "actor", "detail"]
    lines = render_timeline(ticket_id, entries, "md").splitlines()
    assert lines[4:6] == ["| at (UTC) | source | event | actor | detail |", "|---|---|---|---|---|"]
    md_rows = [_md_cells(line) for line in lines[6:]]
    assert len(table) - 1 == len(md_rows) == len(from_json)
    for row, cells, md in zip(from_json, table[1:], md_rows, strict=True):
        plain = [row["at"], row["source"], row["kind"], row["actor"]]
        # A cell a spreadsheet would run as a formula starts with an apostrophe in CSV (and only in CSV).
        unformula = [c[1:] if c[:1] == "'" and c[1:2] in ("=", "+", "-", "@", "\t", "\r") else c for c in cells[:4]]
        assert unformula == plain
        assert json.loads(cells[4]) == row["detail"]
        assert md[:4] == plain
        assert _parse_detail(md[4]) == row["detail"], md[4]


def test_empty_timeline_in_every_format() -> None:
    assert json.loads(render_timeline("T-0", [], "json")) == {"ticket_id": "T-0", "events": []}
    assert render_timeline("T-0", [], "csv") == "at,source,kind,actor,detail\r\n"
    assert "0 events." in render_timeline("T-0", [], "md")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.text(min_size=1, max_size=20),
    actor=st.one_of(st.none(), st.text(max_size=30)),
    detail=st.dictionaries(st.text(max_size=12), json_values, max_size=5),
)
def test_any_row_reads_the_same_in_every_format(kind: str, actor: str | None, detail: dict[str, Any]) -> None:
    entry = {"at": "2035-05-11T14:55:00Z", "source": "workflow", "kind": kind, "actor": actor, "detail": detail}
    assert_same_rows("T|<1>", [entry, {**entry, "detail": None}])


def test_one_notation_for_durations_whatever_wrote_them() -> None:
    from workflows.durations import iso_duration

    assert [iso_duration(timedelta(**kw)) for kw in ({"days": 1}, {"minutes": 90}, {"seconds": 0.5}, {})] == [
        "PT24H",
        "PT1H30M",
        "PT0.5S",
        "PT0S",
    ]
    old = {"at": "2035-05-11T14:55:00Z", "kind": "sla_started", "detail": {"target": "1 day, 2:00:00"}}
    summary = {"time_to_resolution": "P1DT3H20M0.159S", "time_to_first_response": "PT20M"}
    done = {"at": "2035-05-11T14:55:00Z", "kind": "workflow_completed", "detail": {"summary": summary}}
    refused = {"at": "2035-05-11T14:55:00Z", "kind": "action_rejected", "detail": {"reason": "in tier for 0h20m"}}
    said = {"at": "2035-05-11T14:55:00Z", "kind": "escalated", "detail": {"reason": "customer waited 2h30m"}}
    rows = json.loads(render_timeline("T-1", [old, done, refused, said], "json"))["events"]
    assert rows[3]["detail"]["reason"] == "customer waited 2h30m"  # a person's words are theirs
    assert rows[0]["detail"]["target"] == "PT26H"
    assert rows[1]["detail"]["summary"] == {"time_to_resolution": "PT27H20M0.159S", "time_to_first_response": "PT20M"}
    assert rows[2]["detail"]["reason"] == "in tier for PT20M"


def test_status_and_summary_write_durations_in_the_same_notation() -> None:
    from datetime import UTC

    from workflows.models import ClockStatus

    clock = ClockStatus.model_validate(
        {
            "name": "resolution",
            "state": "running",
            "target": "P1D",  # as a policy writes it
            "started_at": datetime(2035, 5, 11, tzinfo=UTC),
            "deadline": None,
            "elapsed": timedelta(minutes=90),
            "paused": timedelta(0),
            "breached": False,
            "breached_at": None,
        }
    )
    dumped = json.loads(clock.model_dump_json())
    assert (dumped["target"], dumped["elapsed"], dumped["paused"]) == ("PT24H", "PT1H30M", "PT0S")
    assert ClockStatus.model_validate(dumped).target == timedelta(days=1)  # and reads back
