"""Start `escalations worker|api|codec-server|run` as real child processes for tests, and stop them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.ports import free_port as free_port  # re-exported for the tests that import it from here

REPO = Path(__file__).resolve().parent.parent


def clean_env(**settings: object) -> dict[str, str]:
    """The environment without anyone's ESCALATIONS_/TEMPORAL_ variables, plus these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESCALATIONS_", "TEMPORAL_"))}
    env |= {f"ESCALATIONS_{k.upper()}": str(v) for k, v in settings.items() if v is not None}
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 90) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.popen.wait(timeout=timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=30)


def spawn(command: str, env: dict[str, str], log_dir: Path, name: str | None = None) -> Process:
    """`escalations <command>` (through this interpreter) with its output in a log file."""
    name = name or command
    log = log_dir / f"{name}.log"
    out = log.open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *command.split()], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
    )
    out.close()
    return Process(name, popen, log)


def wait_status(url: str, status: int = 200, seconds: float = 90, process: Process | None = None) -> httpx.Response:
    """Poll `url` until it answers `status` (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            raise AssertionError(f"{process.name} exited {process.popen.returncode}:\n{process.output()[-3000:]}")
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == status:
                return response
            last = response.status_code
        except httpx.HTTPError as err:
            last = err
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer {status} in {seconds} s (last: {last!r})")


def stop_all(processes: list[Process]) -> None:
    for p in processes:
        p.kill()


def send(process: Process, sig: signal.Signals) -> None:
    os.kill(process.popen.pid, sig)


@dataclass
class DevServerProcess:
    address: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


def start_dev_server_process(log_dir: Path, *extra: str) -> DevServerProcess:
    """A headless in-memory dev server in its own process, with the contract's search attributes."""
    from workers.connection import binary
    from workflows import search_attributes as sa

    port = free_port()
    log = (log_dir / f"temporal-{port}.log").open("wb")
    process = subprocess.Popen(
        [str(binary("temporal")), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
         "--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "warn",
         *sa.cli_flags(), *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the dev server exited {process.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return DevServerProcess(f"127.0.0.1:{port}", process)
        time.sleep(0.1)
    process.kill()
    raise TimeoutError("the dev server did not open its port in 60 s")


def start_worker(address: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`tests/worker_process.py` against `address`, settings from `env`; returns once it polls."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.worker_process", address],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(os.environ.get("WORKER_STDERR", os.devnull), "ab"),  # noqa: SIM115
    )
    assert process.stdout is not None
    for _ in range(200):  # the worker's log lines come first
        line = process.stdout.readline()
        if line.strip() == b"ready" or not line:
            break
    assert line.strip() == b"ready", line
    return process
