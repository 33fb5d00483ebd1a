"""Separate processes on the dev server: `escalations worker`, `api` and `codec-server`, each alone.

What a platform team checks before it trusts a deployment: each process reports health and readiness;
a ticket opened through the API is handled by the worker process; the raw history (`temporal workflow
show --output json`, no codec) holds no customer email, name or subject; the same command with the codec
server shows them, only with its token; a browser may call the codec server only from the UI's origin;
rotating the key keeps old tickets readable, and a process without the old key reads nothing of them;
SIGTERM lets a running notification finish before the worker exits.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.auth import new_key_entry
from tests.conftest import TEST_CODEC_KEYS, TEST_SECRET, policy_doc
from tests.processes import (
    DevServerProcess,
    Process,
    clean_env,
    free_port,
    spawn,
    start_dev_server_process,
    stop_all,
    wait_status,
)
from tests.receiver import Receiver, start_receiver
from workers.connection import binary

CODEC_TOKEN = "codec-token-for-tests-" + uuid.uuid4().hex
UI_ORIGIN = "http://127.0.0.1:18233"
ROOT = Path(__file__).resolve().parent.parent
EMAIL, NAME, SUBJECT = "jane.doe.secret@example.org", "Jane Secretname", "Refund for order Zebra-771"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServerProcess]:
    dev = start_dev_server_process(tmp_path_factory.mktemp("devserver"))
    yield dev
    dev.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = start_receiver()
    yield r
    r.server.shutdown()


class Stack:
    """The three processes against one dev server, and how to reach them."""

    def __init__(self, dev: DevServerProcess, receiver: Receiver, tmp: Path, codec_keys: str, **extra: Any):
        self.address = dev.address
        self.api_key, entry = new_key_entry("helpdesk", ["system", "agent", "lead", "manager"])
        policy = tmp / "policy.yaml"
        doc = policy_doc()
        for tier in doc["sla"].values():  # a notice soon after opening: the first-response warning
            for targets in tier.values():
                targets.update(first_response="PT4S", resolution="PT1H")
        policy.write_text(yaml.safe_dump(doc))
        self.ports = {"api": free_port(), "codec": free_port(), "health": free_port()}
        self.env = clean_env(
            temporal_address=self.address,
            task_queue=f"proc-{uuid.uuid4().hex[:8]}",
            policy_path=policy,
            webhook_url=f"{receiver.url}/events",
            webhook_secret=TEST_SECRET,
            api_keys=entry,
            api_port=self.ports["api"],
            codec_keys=codec_keys or None,
            codec_server_port=self.ports["codec"],
            codec_server_tokens=CODEC_TOKEN,
            codec_server_cors_origins=UI_ORIGIN,
            worker_health_port=self.ports["health"],
            data_dir=tmp / "data",
            **extra,
        )
        self.tmp = tmp
        self.processes: list[Process] = []

    def start(self, *commands: str, suffix: str = "") -> None:
        for command in commands:
            self.processes.append(spawn(command, self.env, self.tmp, name=f"{command}{suffix}"))
        for p in self.processes[-len(commands) :]:
            url = {
                "worker": f"http://127.0.0.1:{self.ports['health']}/readyz",
                "api": f"{self.api}/readyz",
                "codec-server": f"{self.codec}/healthz",
            }[p.name.removesuffix(suffix)]
            wait_status(url, 200, 90, p)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def codec(self) -> str:
        return f"http://127.0.0.1:{self.ports['codec']}"

    def open(self, ticket_id: str) -> None:
        body = {
            "ticket_id": ticket_id,
            "subject": SUBJECT,
            "description": f"Please call {NAME} back",
            "customer": {"id": "c-77", "name": NAME, "email": EMAIL},
        }
        answer = httpx.post(f"{self.api}/tickets", json=body, headers={"X-API-Key": self.api_key}, timeout=30)
        assert answer.status_code == 201, answer.text
        for _ in range(300):  # answered by the worker process once it has run the first task
            status = httpx.get(f"{self.api}/tickets/{ticket_id}", headers={"X-API-Key": self.api_key}, timeout=30)
            if status.status_code == 200:
                assert status.json()["ticket_id"] == ticket_id
                return
            time.sleep(0.2)
        raise AssertionError(f"ticket {ticket_id} never answered: {status.status_code} {status.text}")

    def show(self, ticket_id: str, *codec: str, check: bool = True) -> str:
        result = subprocess.run(
            [str(binary("temporal")), "workflow", "show", "--workflow-id", f"ticket-{ticket_id}", "--output", "json",
             "--address", self.address, *codec],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0 or not check, result.stderr
        return result.stdout if result.returncode == 0 else json.dumps({"error": result.stderr})

    def show_decoded(self, ticket_id: str) -> str:
        return self.show(ticket_id, "--codec-endpoint", self.codec, "--codec-auth", f"Bearer {CODEC_TOKEN}")


def readable(show_output: str) -> str:
    """The history as text, plus every string value base64-decoded (payload data and metadata are base64)."""
    parts = [show_output]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            with contextlib.suppress(binascii.Error, ValueError):
                parts.append(base64.b64decode(node, validate=True).decode("utf-8", errors="replace"))

    walk(json.loads(show_output))
    return "\n".join(parts)


def plain(show_output: str) -> list[str]:
    """Which of the customer's email, name and the subject the history shows in clear."""
    text = readable(show_output)
    return [secret for secret in (EMAIL, NAME, SUBJECT) if secret in text]


def test_worker_api_and_codec_server_as_separate_processes(
    server: DevServerProcess, receiver: Receiver, tmp_path: Path
) -> None:
    stack = Stack(server, receiver, tmp_path, TEST_CODEC_KEYS)
    try:
        stack.start("worker", "api", "codec-server")
        pids = {p.popen.pid for p in stack.processes}
        assert len(pids) == 3
        assert httpx.get(f"http://127.0.0.1:{stack.ports['health']}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{stack.api}/readyz").json()
        assert ready == {"status": "ok", "temporal": "ok"}

        stack.open("PROC-1")
        for _ in range(150):  # the worker process delivers the first-response warning
            if receiver.events("sla.warning"):
                break
            time.sleep(0.2)
        assert receiver.events("sla.warning"), "the worker process sent no notice"

        raw = stack.show("PROC-1")
        assert "PROC-1" in raw and "binary/encrypted" in readable(raw)
        assert plain(raw) == [], "customer data in plain text in the raw history"
        # The UI's summary and details, and the timers' labels (user metadata) are payloads too: encrypted.
        metadata = [e["userMetadata"] for e in json.loads(raw)["events"] if "userMetadata" in e]
        encodings = {
            base64.b64decode(part["metadata"]["encoding"]).decode()
            for m in metadata
            for part in (m.get("summary"), m.get("details"))
            if part
        }
        assert metadata and encodings == {"binary/encrypted"}
        decoded = stack.show_decoded("PROC-1")
        assert plain(decoded) == [EMAIL, NAME, SUBJECT]

        # Without the token, or with a wrong one, the codec server decrypts nothing.
        bad_token = ("--codec-endpoint", stack.codec, "--codec-auth", "Bearer nope", "--command-timeout", "5s")
        wrong = stack.show("PROC-1", *bad_token, check=False)
        assert plain(wrong) == []
        body: dict[str, list[object]] = {"payloads": []}
        assert httpx.post(f"{stack.codec}/decode", json=body).status_code == 401
        assert httpx.post(f"{stack.codec}/nope/decode", json=body).status_code == 401
        assert httpx.post(f"{stack.codec}/{CODEC_TOKEN}/decode", json=body).status_code == 200
        garbage = httpx.post(
            f"{stack.codec}/decode", content=b"\xff{", headers={"Authorization": f"Bearer {CODEC_TOKEN}"}
        )
        assert garbage.status_code == 400

        # CORS: the UI's origin may call it from a browser; another origin gets no allowance.
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        }
        ok = httpx.options(f"{stack.codec}/decode", headers={"Origin": UI_ORIGIN, **preflight})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == UI_ORIGIN
        evil = httpx.options(f"{stack.codec}/decode", headers={"Origin": "http://evil.example", **preflight})
        assert "access-control-allow-origin" not in evil.headers
    finally:
        codes = {p.name: p.stop() for p in stack.processes}
        stop_all(stack.processes)
    assert codes == {"worker": 0, "api": 0, "codec-server": 0}, {p.name: p.output()[-2000:] for p in stack.processes}
    worker_log = stack.processes[0].output()
    assert '"event": "worker.stopped"' in worker_log
    for p in stack.processes:
        assert CODEC_TOKEN not in p.output() and TEST_CODEC_KEYS.split(":")[1] not in p.output()


def test_key_rotation_keeps_old_tickets_readable_and_a_missing_key_reads_nothing(
    server: DevServerProcess, receiver: Receiver, tmp_path: Path
) -> None:
    """Rotation on a key file, as the embedded default does it: the running worker and codec server meet
    the new key id in a new ticket and re-read the file; old tickets stay readable; without the old key
    their first payloads stay sealed."""
    key_file = tmp_path / "codec-keys"
    key_file.write_text(TEST_CODEC_KEYS + "\n")
    key_file.chmod(0o600)
    old_id = TEST_CODEC_KEYS.split(":")[0]
    stack = Stack(server, receiver, tmp_path, "", codec_key_file=key_file)
    try:
        stack.start("worker", "api", "codec-server")
        stack.open("ROT-old")

        rotated = subprocess.run(
            [sys.executable, "-m", "cli.main", "codec-key", "--rotate"],
            env=stack.env, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert rotated.returncode == 0, rotated.stderr
        new_entry = key_file.read_text().splitlines()[0]
        new_id = new_entry.split(":")[0]
        assert new_id != old_id and key_file.read_text().splitlines()[1] == TEST_CODEC_KEYS
        api = next(p for p in stack.processes if p.name == "api")
        api.stop()
        stack.processes.remove(api)
        stack.start("api", suffix="-rotated")  # a new process: encrypts with the new key
        stack.open("ROT-new")  # the worker started before the rotation runs it

        def first_key(ticket_id: str, *codec: str) -> str:
            shown = json.loads(stack.show(ticket_id, *codec))
            started = shown["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
            return base64.b64decode(started["metadata"].get("encryption-key-id", "")).decode()

        assert first_key("ROT-old") == old_id and first_key("ROT-new") == new_id
        for ticket_id in ("ROT-old", "ROT-new"):  # both readable: through the codec server and the API
            assert plain(stack.show_decoded(ticket_id)) == [EMAIL, NAME, SUBJECT]
            answer = httpx.get(f"{stack.api}/tickets/{ticket_id}", headers={"X-API-Key": stack.api_key}, timeout=30)
            assert answer.status_code == 200, answer.text

        # A codec server that has only the new key: the old ticket's start stays sealed, the new one opens.
        stack.env["ESCALATIONS_CODEC_KEYS"] = new_entry
        codec = next(p for p in stack.processes if p.name == "codec-server")
        codec.stop()
        stack.processes.remove(codec)
        stack.start("codec-server", suffix="-new-only")
        codec_args = ("--codec-endpoint", stack.codec, "--codec-auth", f"Bearer {CODEC_TOKEN}")
        # Not decrypted: said in its place, with the reason (it came back sealed, looking like any payload).
        sealed = json.loads(stack.show("ROT-old", *codec_args))
        started = sealed["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
        shown = json.loads(base64.b64decode(started["data"]))
        assert shown["undecryptable"] is True and old_id in shown["reason"] and "known keys" in shown["reason"]
        assert first_key("ROT-new", *codec_args) == ""  # decrypted: no key id left
        assert plain(stack.show_decoded("ROT-new")) == [EMAIL, NAME, SUBJECT]
    finally:
        stop_all(stack.processes)
    worker_log = next(p for p in stack.processes if p.name == "worker").output()
    assert "codec.undecryptable" not in worker_log and "workflow_task.failed" not in worker_log


def test_sigterm_lets_a_running_notification_finish(
    server: DevServerProcess, receiver: Receiver, tmp_path: Path
) -> None:
    """A worker told to stop while a notice is being sent waits for it (graceful shutdown): the send
    completes, is recorded as delivered, and is never sent again; the worker exits 0."""
    receiver.delay_seconds = 6  # the notice is in flight for 6 s
    stack = Stack(server, receiver, tmp_path, TEST_CODEC_KEYS)
    try:
        stack.start("worker", "api")
        stack.open("TERM-1")
        deadline = time.monotonic() + 90
        while not receiver.arrived and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.arrived, "no notice was sent"
        worker = stack.processes[0]
        worker.popen.send_signal(signal.SIGTERM)
        code = worker.popen.wait(timeout=60)
        assert code == 0, worker.output()[-2000:]
        in_flight = receiver.arrived[0]
        assert [r.headers["webhook-id"] for r in receiver.accepted][:1] == [in_flight]  # the send completed

        # Another worker takes the ticket over; it finds Temporal through Temporal's own client configuration
        # (a profile of a temporal.toml file), not through ESCALATIONS_TEMPORAL_ADDRESS.
        config = tmp_path / "temporal.toml"
        config.write_text(f'[profile.ops]\naddress = "{stack.address}"\n')
        del stack.env["ESCALATIONS_TEMPORAL_ADDRESS"]
        stack.env |= {"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "ops"}
        stack.start("worker", suffix="-2")
        for _ in range(100):
            status = httpx.get(f"{stack.api}/tickets/TERM-1", headers={"X-API-Key": stack.api_key}, timeout=30)
            if status.status_code == 200 and status.json()["undelivered_count"] == 0:
                break
            time.sleep(0.2)
        assert status.json()["undelivered_count"] == 0, status.text
        time.sleep(3)
        assert receiver.arrived.count(in_flight) == 1, f"sent again after the shutdown: {receiver.arrived}"
    finally:
        stop_all(stack.processes)
    log = stack.processes[0].output()
    assert '"event": "worker.stopping"' in log and '"event": "worker.stopped"' in log
