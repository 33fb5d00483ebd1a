"""Shared fixtures: real Temporal servers (from pip-installed binaries), a real HTTP receiver."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.client import TicketClient
from config.settings import DEFAULT_POLICY, Settings
from tests.pg import PostgresServer, start_postgres
from tests.ports import free_port
from tests.receiver import Receiver, start_receiver
from workers.codec import EncryptionCodec, KeyRing, data_converter
from workers.connection import binary, register_search_attributes
from workers.worker import build_worker
from workflows import search_attributes as sa

# Tests never touch the user's data folder (.data: the store `./dev run` and `escalations review`
# read, and its payload key): every process the tests start, and every `Settings()` they make, gets
# this session's own folder unless a test names one. `pytest_sessionfinish` checks .data is as it was.
USER_DATA = Path(__file__).resolve().parent.parent / ".data"
if "ESCALATIONS_DATA_DIR" not in os.environ:
    os.environ["ESCALATIONS_DATA_DIR"] = tempfile.mkdtemp(prefix="escalations-test-data-")


def _listing(folder: Path) -> list[tuple[str, int, int]] | None:
    if not folder.exists():
        return None
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


_USER_DATA_BEFORE = _listing(USER_DATA)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller checks once, after all of them
    if _listing(USER_DATA) != _USER_DATA_BEFORE:
        print(f"\nerror: the tests wrote into the user's data folder {USER_DATA}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


TEST_SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLWVzY2FsYXRpb25zLXRlc3Q="
# Every test server stores encrypted payloads, as production does (workers/codec.py): the one converter.
TEST_CODEC_KEYS = "test-k1:dGVzdC1vbmx5LWNvZGVjLWtleS0zMi1ieXRlcy0wMDA="
TEST_CODEC = EncryptionCodec(KeyRing.parse(TEST_CODEC_KEYS))
TEST_CONVERTER = data_converter(codec=TEST_CODEC)


@pytest.fixture(autouse=True)
def _default_logging() -> None:
    """Each test starts with structlog and the root logger as an unconfigured process has them.

    A test that runs a command in-process configures logging onto its own captured stream; pytest
    closes that stream after the test, and a later test's log lines (which it may read from
    capsys) would go nowhere ("I/O operation on closed file")."""
    import logging

    import structlog

    structlog.reset_defaults()
    logging.getLogger().handlers[:] = []


@pytest.fixture
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping test server per test: days of SLA time in milliseconds.

    Per test, because a workflow left running by an earlier test (with no worker any more) holds
    the shared clock still.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=TEST_CONVERTER,
        test_server_existing_path=str(binary("temporal-test-server")),
    )
    await register_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


async def time_skipping_with_metrics() -> tuple[WorkflowEnvironment, str]:
    """A time-skipping test server whose runtime serves Prometheus metrics on a free port, and the
    URL to scrape (the SDK's and the product's counters of the workers that run on it)."""
    from workers.telemetry import metrics_runtime

    address = f"127.0.0.1:{free_port()}"
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=TEST_CONVERTER,
        test_server_existing_path=str(binary("temporal-test-server")),
        runtime=metrics_runtime(address),
    )
    return env, f"http://{address}/metrics"


async def start_dev_server(suggest_continue_as_new_after: int) -> WorkflowEnvironment:
    """The real dev server (in memory) with the contract's search attributes registered, suggesting
    continue-as-new after that many history events (so tests see it without long histories)."""
    limit = f"limit.historyCount.suggestContinueAsNew={suggest_continue_as_new_after}"
    return await WorkflowEnvironment.start_local(
        data_converter=TEST_CONVERTER,
        dev_server_existing_path=str(binary("temporal")),
        search_attributes=sa.ALL,
        dev_server_extra_args=["--dynamic-config-value", limit],
    )


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server(200)
    yield env
    await env.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = start_receiver()
    yield r
    r.server.shutdown()


def policy_doc(**overrides: Any) -> dict[str, Any]:
    """The default policy, on a 24x7 calendar, with its endpoint replaced by the test's."""
    doc: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY.read_text())
    for route in doc["routes"]:
        route["calendar"] = "always"
    doc.update(overrides)
    return doc


@pytest.fixture
def write_policy(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    def write(doc: dict[str, Any]) -> Path:
        path = tmp_path / f"policy-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    return write


# Workers in tests write their record store here unless a test gives its own (`store_url` fixture).
TEST_STORE_URL = f"sqlite:///{tempfile.gettempdir()}/escalations-test-store-{os.getpid()}.db"


def make_settings(policy_path: Path, receiver: Receiver | None, store_url: str | None = None) -> Settings:
    return Settings(
        policy_path=policy_path,
        store_url=SecretStr(store_url or TEST_STORE_URL),
        webhook_url=f"{receiver.url}/events" if receiver else None,
        helpdesk_url=receiver.url if receiver else None,
        webhook_secret=SecretStr(TEST_SECRET),
        codec_keys=SecretStr(TEST_CODEC_KEYS),
        graceful_shutdown_seconds=0,  # a test's worker stops at once (tests/test_processes.py checks the grace)
        _env_file=None,
    )


class Harness:
    """A worker on a fresh task queue, and a ticket client for it."""

    def __init__(self, client: Client, worker: Worker, task_queue: str, settings: Settings) -> None:
        self.client = client
        self.worker = worker
        self.task_queue = task_queue
        self.settings = settings
        self.tickets = TicketClient(client, task_queue)


@pytest.fixture
def make_harness(write_policy: Callable[[dict[str, Any]], Path]) -> Callable[..., Any]:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def make(
        env: WorkflowEnvironment,
        receiver: Receiver | None,
        doc: dict[str, Any] | None = None,
        store_url: str | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Harness]:
        settings = make_settings(write_policy(doc or policy_doc()), receiver, store_url)
        if overrides:
            settings = settings.model_copy(update=overrides)
        task_queue = f"tq-{uuid.uuid4().hex[:8]}"
        async with httpx.AsyncClient(timeout=5) as http:
            worker = build_worker(env.client, settings, http, task_queue=task_queue)
            async with worker:
                yield Harness(env.client, worker, task_queue, settings)

    return make


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """Headless Debian Chromium through Playwright, one per test session (see tests/browser.py)."""
    from tests.browser import launch

    async with launch() as b:
        yield b


# ---------------------------------------------------------------------- the record store's databases
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (the machine's binaries, a private temporary cluster)."""
    server = start_postgres()
    if server is None:
        pytest.skip("no PostgreSQL binaries found (Debian: apt-get install postgresql; or ESCALATIONS_PG_BIN)")
    yield server
    server.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty record store: a SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()
