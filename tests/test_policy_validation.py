"""Invalid policies are refused at load, each message naming the place and the reason."""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.policy import PolicyError, load_policy_file, parse_policy
from config.settings import DEFAULT_POLICY

BASE: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY.read_text())


def problems_of(mutate: Any) -> list[str]:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    with pytest.raises(PolicyError) as err:
        parse_policy(doc, "test")
    return err.value.problems


def test_shipped_policies_are_valid() -> None:
    paths = sorted((DEFAULT_POLICY.parent).glob("*.yaml"))
    assert DEFAULT_POLICY in paths, paths
    for path in paths:
        load_policy_file(path)


def test_unreachable_ladder_step() -> None:
    def late_step(doc: dict[str, Any]) -> None:
        doc["ladders"]["resolution"].append(
            {
                "id": "too-late",
                "after_breach": "PT2H",
                "tiers": [1, 2],
                "actions": [{"type": "notify", "roles": ["assignee"]}],
            }
        )

    assert any(
        "ladders.resolution[3] (too-late): unreachable" in p and "'res-breach' escalates" in p
        for p in problems_of(late_step)
    )


def test_warning_after_its_breach() -> None:
    def misplaced(doc: dict[str, Any]) -> None:
        doc["ladders"]["first_response"].append(
            {"id": "late-warning", "at_percent": 90, "actions": [{"type": "notify", "roles": ["assignee"]}]}
        )

    assert (
        "ladders.first_response[2] (late-warning): a warning listed after its breach step; warnings come first"
        in problems_of(misplaced)
    )


def test_unknown_department_in_a_route() -> None:
    assert "routes[1] (billing).department: unknown department 'finance'" in problems_of(
        lambda d: d["routes"][1].update(department="finance")
    )


def test_unknown_role_in_a_notify_action() -> None:
    found = problems_of(lambda d: d["ladders"]["first_response"][0]["actions"][0].update(roles=["ceo"]))
    assert any(p.startswith("ladders.first_response.0.actions.0.notify.roles.0") and "'assignee'" in p for p in found)


def test_unknown_role_in_permissions() -> None:
    found = problems_of(lambda d: d["permissions"].update(intern={"reassign": "none"}))
    assert any(p.startswith("permissions.intern") for p in found)


def test_unknown_calendar() -> None:
    assert "routes[0] (public-social).calendar: unknown calendar 'mars'" in problems_of(
        lambda d: d["routes"][0].update(calendar="mars")
    )


def test_route_shadowed_by_an_earlier_catch_all() -> None:
    def catch_all_first(doc: dict[str, Any]) -> None:
        doc["routes"].insert(1, {"name": "everything", "department": "support", "calendar": "always"})

    assert (
        "routes[2] (billing): shadowed by earlier catch-all routes[1] (everything); it can never match"
        in problems_of(catch_all_first)
    )


def test_route_shadowed_by_a_broader_route() -> None:
    def narrower_after(doc: dict[str, Any]) -> None:
        doc["routes"].insert(
            2, {"name": "refunds", "match": {"category": ["refund"]}, "department": "billing", "calendar": "always"}
        )

    assert "routes[2] (refunds): shadowed by earlier route routes[1] (billing); it can never match" in problems_of(
        narrower_after
    )


def test_cc_rule_on_a_department_with_no_head() -> None:
    assert "ladders: cc_department_head is used but department(s) technical have no head" in problems_of(
        lambda d: d["departments"]["technical"].pop("head")
    )


def test_escalation_chain_that_cycles() -> None:
    def cycle(doc: dict[str, Any]) -> None:
        doc["tiers"][2]["escalates_to"] = 2
        doc["tiers"][1]["escalates_to"] = 3

    assert "tiers: escalation chain cycles (1 -> 2 -> 3 -> 2)" in problems_of(cycle)


def test_field_errors_name_the_field() -> None:
    found = problems_of(lambda d: d["sla"][1]["urgent"].update(first_response="soon"))
    assert any(p.startswith("sla.1.urgent.first_response:") for p in found)
    assert any(
        "unknown IANA time zone 'Mars/Base'" in p
        for p in problems_of(lambda d: d["calendars"]["berlin-office"].update(timezone="Mars/Base"))
    )
    assert any("sla.2: no targets for priorities urgent" in p for p in problems_of(lambda d: d["sla"][2].pop("urgent")))


def test_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("version: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy_file(bad)
    with pytest.raises(PolicyError, match="cannot read file"):
        load_policy_file(tmp_path / "missing.yaml")


def test_country_holidays_are_checked_for_the_years_a_ticket_opened_today_carries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import holidays

    from config.holiday_dates import holiday_problems, holiday_years

    policy = parse_policy(copy.deepcopy(BASE), "test")
    asked: list[list[int]] = []
    real = holidays.country_holidays

    def only_until_2027(country: str, subdiv: str | None = None, years: list[int] | None = None) -> Any:
        asked.append(list(years or []))
        if any(year > 2027 for year in years or []):
            raise NotImplementedError("no data after 2027")
        return real(country, subdiv=subdiv, years=years)

    monkeypatch.setattr(holidays, "country_holidays", only_until_2027)
    assert holiday_problems(policy, today=date(2025, 6, 1)) == []
    assert asked[-1] == list(holiday_years(2025)) == [2024, 2025, 2026, 2027]
    # Next year, a ticket would carry 2028: refused at load, not when the ticket freezes its policy.
    found = holiday_problems(policy, today=date(2026, 1, 2))
    assert found and found[0].startswith("calendars.berlin-office.country_holidays: DE/BE is not known"), found


def test_a_binary_policy_file_is_invalid_and_the_worker_keeps_the_last_good_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not UTF-8 (a binary file written over the policy): a `PolicyError` naming the byte, so the
    worker logs `policy.invalid` and keeps its last good policy, for new tickets and for the
    templates of every notice it delivers meanwhile."""
    from activities.policy_file import PolicyFile
    from config.settings import Settings

    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT_POLICY.read_text())
    file = PolicyFile(Settings(policy_path=path, _env_file=None))
    good = file.current()
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    with pytest.raises(PolicyError, match="not UTF-8 text"):
        load_policy_file(path)
    assert file.current() is good
    assert "policy.invalid" in capsys.readouterr().out


def test_the_fingerprint_is_what_the_policy_says_not_how_the_schema_spells_it() -> None:
    """A default spelled out (as a later version's new field would appear with its default) does not
    change the fingerprint; a changed value does."""
    doc = yaml.safe_load(DEFAULT_POLICY.read_text())
    base = parse_policy(copy.deepcopy(doc), "p.yaml").fingerprint()
    dumped = parse_policy(copy.deepcopy(doc), "p.yaml").model_dump(mode="json")  # every default spelled out
    assert parse_policy(dumped, "p.yaml").fingerprint() == base
    changed = copy.deepcopy(doc)
    changed["sla"][1]["normal"]["first_response"] = "PT7H"
    assert parse_policy(changed, "p.yaml").fingerprint() != base
