"""The README's run command: dev server with Web UI on SQLite, worker and API; durable across restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from api.auth import DEV_API_KEY
from tests.ports import free_port


def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def wait_ok(url: str, seconds: float = 60) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            response = httpx.get(url, headers={"X-API-Key": DEV_API_KEY}, timeout=2)
            if response.status_code < 500:
                return response
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(url)
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
    process.send_signal(sig)
    out, _ = process.communicate(timeout=30)
    return process.returncode, out.decode()


def test_run_brings_up_server_ui_worker_and_api_and_tickets_survive_a_restart(tmp_path: Path) -> None:
    ports = {
        "ESCALATIONS_DEV_SERVER_PORT": free_port(),
        "ESCALATIONS_DEV_UI_PORT": free_port(),
        "ESCALATIONS_API_PORT": free_port(),
        "ESCALATIONS_CODEC_SERVER_PORT": free_port(),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_") or k == "ESCALATIONS_DATA_DIR"}
    secret = "whsec_c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1iZS1sb2dnZWQtMTIzNDU2"
    env |= {k: str(v) for k, v in ports.items()} | {
        "ESCALATIONS_DATA_DIR": str(tmp_path / "data"),
        "ESCALATIONS_POLICY_PATH": "config/policies/demo.yaml",
        "ESCALATIONS_WEBHOOK_SECRET": secret,
        "ESCALATIONS_HELPDESK_TOKEN": "helpdesk-token-never-logged",
        "ESCALATIONS_LOG_LEVEL": "DEBUG",
        "ESCALATIONS_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    api = f"http://127.0.0.1:{ports['ESCALATIONS_API_PORT']}"
    process = start(env)
    try:
        assert wait_ok(f"{api}/healthz").json() == {"status": "ok"}
        ui = wait_ok(f"http://127.0.0.1:{ports['ESCALATIONS_DEV_UI_PORT']}/")
        assert ui.status_code == 200 and "<html" in ui.text.lower()
        # The Web UI decrypts through the codec server: its endpoint carries the local token in its path.
        ui_settings = httpx.get(f"http://127.0.0.1:{ports['ESCALATIONS_DEV_UI_PORT']}/api/v1/settings", timeout=10)
        endpoint = ui_settings.json()["Codec"]["Endpoint"]
        token = (tmp_path / "data" / "codec-server-token").read_text().strip()
        assert endpoint == f"http://127.0.0.1:{ports['ESCALATIONS_CODEC_SERVER_PORT']}/{token}"
        assert httpx.post(f"{endpoint}/decode", json={"payloads": []}, timeout=10).status_code == 200
        assert httpx.post(f"{endpoint.rsplit('/', 1)[0]}/decode", json={"payloads": []}, timeout=10).status_code == 401
        opened = httpx.post(
            f"{api}/tickets",
            headers={"X-API-Key": DEV_API_KEY},
            json={"ticket_id": "run-1", "subject": "It broke", "customer": {"id": "c1"}, "priority": "urgent"},
        )
        assert opened.status_code == 201
        status = wait_ok(f"{api}/tickets/run-1")
        assert status.status_code == 200 and status.json()["policy_version"].startswith("2026.11-demo"), status.text
    finally:
        code, output = stop(process)
    assert code == 0, output
    assert '"event": "worker.stopped"' in output and '"event": "devserver.stopped"' in output
    assert secret not in output and "helpdesk-token-never-logged" not in output
    assert "webhooks.dev_secret" not in output  # a real secret was set: no development warning
    assert (tmp_path / "data" / "temporal.db").exists()
    key_file = tmp_path / "data" / "codec-keys"  # the embedded default made its encryption key on first run
    assert key_file.exists() and key_file.stat().st_mode & 0o777 == 0o600
    assert '"event": "codec.enabled"' in output and key_file.read_text().split(":")[1].strip() not in output

    process = start(env)  # the same SQLite file: the ticket is still there, still running
    try:
        status = wait_ok(f"{api}/tickets/run-1")  # read with the same key file
        assert status.status_code == 200 and status.json()["ticket_id"] == "run-1"
        ready = httpx.get(f"{api}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json() == {"status": "ok", "temporal": "ok"}
    finally:
        code, output = stop(process, signal.SIGINT)  # Ctrl-C stops as cleanly as SIGTERM
    assert code == 0, output
    assert '"event": "devserver.stopped"' in output
