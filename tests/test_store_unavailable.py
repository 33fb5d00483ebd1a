"""A timeline that must be read from the record store while the store cannot be read (a database
down, a file that is not a database) is a 503 with Retry-After from the API and exit 1 from the
CLI, one line naming the setting: never a 500 or a traceback."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from tests.apiserver import running_api
from tests.test_cli import cli


def broken_store_urls(folder: Path) -> list[str]:
    garbage = folder / "garbage.db"
    garbage.write_bytes(b"this is not a SQLite database\n" * 200)
    return [
        f"sqlite:///{garbage}",
        "postgresql+psycopg://nobody:secret@127.0.0.1:1/nothing",
        "mysql://nobody:secret@127.0.0.1:1/nothing",  # a driver that is not installed
    ]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["not-a-database", "nothing-listening", "no-driver"])
async def test_an_unreadable_record_store_is_a_503_and_a_one_line_exit_1(
    dev_env: WorkflowEnvironment, tmp_path: Path, which: int
) -> None:
    url = broken_store_urls(tmp_path)[which]
    missing = f"GONE-{uuid.uuid4().hex[:8]}"  # not in Temporal: its timeline comes from the store
    async with (
        running_api(
            dev_env.client, tmp_path / "api", {"audit": ["auditor"]}, worker=False, store_url=SecretStr(url)
        ) as api,
        api.client("audit") as http,
    ):
        for query in ("", "?format=csv", "?format=md", "?source=store"):
            answer = await http.get(f"/tickets/{missing}/timeline{query}")
            assert answer.status_code == 503, (query, answer.text)
            assert answer.headers["retry-after"] == "5" and "record store" in answer.text
            assert "secret" not in answer.text

    code, _, text = await cli(
        dev_env, "store-unavailable", "timeline", missing, "--source", "store", extra_env={"ESCALATIONS_STORE_URL": url}
    )
    assert code == 1, text
    assert text.startswith("error: the record store cannot be read now") and "Traceback" not in text
    assert "secret" not in text
