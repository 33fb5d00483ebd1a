"""`escalations api-key NAME ROLE...` refuses a name that would break the settings entry it prints
(`name:sha256:roles`, comma-separated; the name is the actor id the key acts as): exit 2, one line.
It printed such entries with exit 0, and the API then refused to start on them."""

from __future__ import annotations

import json

import pytest

from api.auth import KeyEntryError, new_key_entry, parse_entries
from cli.main import main


@pytest.mark.parametrize("name", ["", "a:b", "a,b", "a b", "tab\there", "x" * 201, "nl\n"])
def test_a_name_that_would_break_the_entry_is_exit_2(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code = main(["api-key", name, "agent"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.startswith("error: name: ") and err.count("\n") == 1
    with pytest.raises(KeyEntryError):
        new_key_entry(name, ["agent"])


def test_every_printed_entry_is_accepted_by_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("ann", "helpdesk.prod-1", "bot@example.com", "ünïcode"):
        assert main(["api-key", name, "agent", "lead", "--json"]) == 0
        printed = capsys.readouterr().out
        entry = json.loads(printed)["settings_entry"]
        (caller,) = parse_entries(entry).values()
        assert caller.name == name
