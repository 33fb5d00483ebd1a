"""`escalations connect` against local Zendesk, Jira and Freshdesk servers: a bad token, a group (or
agent) the mapping names that the helpdesk lacks, and a good configuration, each a one-line answer
(the good one then prints what to paste into the helpdesk)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import policy_doc
from tests.fakes.freshdesk import FakeFreshdesk
from tests.fakes.jira import FakeJira
from tests.fakes.zendesk import FakeZendesk

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:
        zendesk = stack.enter_context(FakeZendesk())
        zendesk.add_group(360001, "Billing T1")
        jira = stack.enter_context(FakeJira())
        jira.add_user("acct-alice", "Alice", "alice@example.com")
        freshdesk = stack.enter_context(FakeFreshdesk())
        freshdesk.add_group(43000001, "Billing T1")
        yield {"zendesk": zendesk, "jira": jira, "freshdesk": freshdesk}


def setup(
    kind: str, fake: Any, *, token: str | None = None, missing: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(mapping, credentials) for `kind`; `missing`: the mapping names a group (Jira: an agent) not there."""
    if kind == "zendesk":
        mapping = {"kind": kind, "queues": {"billing-t1": "999999" if missing else "360001"}, "own_user": str(fake.me)}
        creds = {"url": fake.url, "username": fake.email, "token": token or fake.token, "secret": "s"}
    elif kind == "jira":
        mapping = {
            "kind": kind,
            "agents": {"alice": "acct-nobody" if missing else "acct-alice"},
            "own_user": fake.account_id,
        }
        creds = {"url": fake.url, "username": fake.email, "token": token or fake.token, "secret": "s"}
    else:
        mapping = {
            "kind": kind,
            "queues": {"billing-t1": "999999" if missing else "43000001"},
            "own_user": str(fake.me),
        }
        creds = {"url": fake.url, "token": token or fake.api_key, "secret": "s"}
    return mapping, creds


def connect(
    tmp_path: Path, kind: str, mapping: dict[str, Any], creds: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    policy = tmp_path / f"{kind}.yaml"
    policy.write_text(yaml.safe_dump(policy_doc(helpdesks={kind: mapping})))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_") or k == "ESCALATIONS_DATA_DIR"}
    env["ESCALATIONS_ENDPOINTS"] = json.dumps({kind: creds})
    argv = [sys.executable, "-m", "cli.main", "connect", kind, "--policy", str(policy)]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", ["zendesk", "jira", "freshdesk"])
def test_connect_answers_in_one_line(kind: str, fakes: dict[str, Any], tmp_path: Path) -> None:
    fake = fakes[kind]
    bad = connect(tmp_path, kind, *setup(kind, fake, token="wrong-token"))
    assert bad.returncode == 3 and bad.stdout == "", bad
    assert len(bad.stderr.splitlines()) == 1 and bad.stderr.startswith(f"error: {kind}: bad credentials"), bad.stderr
    assert "wrong-token" not in bad.stderr

    missing = connect(tmp_path, kind, *setup(kind, fake, missing=True))
    assert missing.returncode == 3 and len(missing.stderr.splitlines()) == 1, missing
    assert ("acct-nobody" if kind == "jira" else "999999") in missing.stderr

    good = connect(tmp_path, kind, *setup(kind, fake))
    assert good.returncode == 0 and good.stderr == "", good
    first, *rest = good.stdout.splitlines()
    assert first.startswith("ok:"), good.stdout
    assert f"/webhooks/{kind}" in good.stdout and len(rest) > 2  # what to paste into the helpdesk


def test_connect_names_what_is_missing(fakes: dict[str, Any], tmp_path: Path) -> None:
    mapping, creds = setup("zendesk", fakes["zendesk"])
    unknown = connect(tmp_path, "zendesk", mapping | {"own_user": "123"}, creds)
    assert unknown.returncode == 3 and f"set own_user: {fakes['zendesk'].me}" in unknown.stderr, unknown
    policy = tmp_path / "none.yaml"
    policy.write_text(yaml.safe_dump(policy_doc()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_") or k == "ESCALATIONS_DATA_DIR"}
    none = subprocess.run(
        [sys.executable, "-m", "cli.main", "connect", "jira", "--policy", str(policy)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert none.returncode == 2 and "helpdesks has none of kind jira" in none.stderr, none
