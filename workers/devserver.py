"""The embedded default: a Temporal dev server on a SQLite file, with its Web UI.

Started only when no Temporal address is configured. The file lives in the data folder, so
tickets survive a restart of `./dev run`.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import structlog
from google.protobuf.duration_pb2 import Duration
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
from temporalio.client import Client

from config.settings import Settings
from workers.connection import binary
from workflows import search_attributes as sa

log = structlog.get_logger("devserver")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class DevServer:
    def __init__(self, settings: Settings, *, codec_endpoint: bool = False) -> None:
        self.settings = settings
        self.codec_endpoint = codec_endpoint
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def db_file(self) -> Path:
        return self.settings.data_dir / "temporal.db"

    async def start(self) -> None:
        port, ui_port = self.settings.dev_server_port, self.settings.dev_ui_port
        if _listening(port):
            log.info("devserver.already_running", address=f"127.0.0.1:{port}")
            return
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(binary("temporal")), "server", "start-dev",
            "--db-filename", str(self.db_file),
            "--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(ui_port),
            "--namespace", self.settings.temporal_namespace,
            "--log-level", "warn",
            *sa.cli_flags(),
        ]  # fmt: skip
        if self.codec_endpoint:  # the Web UI shows decrypted payloads through the local codec server
            from workers.codec_server import ui_endpoint

            command += ["--ui-codec-endpoint", ui_endpoint(self.settings)]
        log_file = (self.settings.data_dir / "temporal-server.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)  # noqa: ASYNC220
        for _ in range(300):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Temporal dev server exited with {self.process.returncode}; "
                    f"see {self.settings.data_dir / 'temporal-server.log'}"
                )
            if _listening(port):
                log.info(
                    "devserver.started",
                    address=f"127.0.0.1:{port}",
                    ui=f"http://127.0.0.1:{ui_port}",
                    db=str(self.db_file),
                )
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("the Temporal dev server did not open its port within 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            log.info("devserver.stopped")


async def set_retention(client: Client, namespace: str, days: int) -> timedelta:
    """Set how long the namespace keeps a closed workflow's history (the embedded default's is 24 h
    otherwise); returns the retention now in force."""
    ttl = Duration()
    ttl.FromTimedelta(timedelta(days=days))
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(namespace=namespace, config=NamespaceConfig(workflow_execution_retention_ttl=ttl))
    )
    described = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    return described.config.workflow_execution_retention_ttl.ToTimedelta()
