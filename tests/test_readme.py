"""The README's commands, run in order as a new user would, on a fresh data folder.

Every ```bash block of README.md is run, command by command, then those of the reference pages under
docs/ that the README links, in the order it links them (```sh blocks are examples that cannot
run here). `./dev run` starts the service in the background, as in its own terminal; a second
`./dev run` while one runs must say, in one line, that it is already running, and where; a comment
`# error: ...` right after a command is the exact error line that command must print. Ports and
the data folder are fresh ones for this test, so it runs beside a developer's own service.

The first `./dev run` runs under a pseudo-terminal, as in a person's terminal: readable console
logs, not JSON, and `status` there draws a table. After that the service runs with its output
piped: JSON lines, no colour codes, every accepted and refused action logged with its fields.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ESCALATIONS = ".venv/bin/escalations"


def command_pages() -> list[Path]:
    """README.md, then every page under docs/ it links, in the order of its first link."""
    pages = [README]
    for link in re.findall(r"\]\((docs/[^)#\s]+\.md)(?:#[^)]*)?\)", README.read_text()):
        page = ROOT / link
        if page not in pages:
            pages.append(page)
    return pages


def bash_blocks() -> list[str]:
    return [
        block
        for page in command_pages()
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(), flags=re.S | re.M)
    ]


def readme_commands() -> list[tuple[str, str | None]]:
    """(command, expected error line or None) from the ```bash blocks, in order; continued lines joined."""
    commands: list[tuple[str, str | None]] = []
    for block in bash_blocks():
        pending = ""
        for line in block.splitlines():
            if not pending and line.strip().startswith("#"):
                expected = re.match(r"#\s*(error: .*)$", line.strip())
                if expected and commands:
                    commands[-1] = (commands[-1][0], expected.group(1))
                continue
            pending = f"{pending}\n{line}" if pending else line
            if pending.endswith("\\"):
                continue
            try:
                shlex.split(pending, comments=True)
            except ValueError:  # an open quote: the command goes on on the next line
                continue
            if pending.strip():
                commands.append((pending, None))
            pending = ""
    return commands


def walkthrough_events() -> list[tuple[str, list[str]]]:
    """The "Try it" table: (after, [event types]) in order, events at the same time grouped (their
    notices are sent together, so they may arrive in any order)."""
    section = README.read_text().split("## Try it", 1)[1].split("\n## ", 1)[0]
    groups: list[tuple[str, list[str]]] = []
    for after, kind in re.findall(r"^\| ([^|`]+?) \| `([a-z_]+\.[a-z_]+)` \|", section, flags=re.M):
        if groups and groups[-1][0] == after:
            groups[-1][1].append(kind)
        else:
            groups.append((after, [kind]))
    return groups


def wait_for_walkthrough(lines: list[str], seconds: float = 180) -> list[str]:
    """Wait until the receiver printed the README's events, then check them group by group."""
    expected = walkthrough_events()
    wanted = sum(len(kinds) for _, kinds in expected)
    assert wanted >= 5, expected
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(lines) < wanted:
        time.sleep(0.5)
    printed = [line.split()[1] for line in lines[:wanted]]
    assert len(printed) == wanted, (expected, lines)
    at = 0
    for after, kinds in expected:
        assert sorted(printed[at : at + len(kinds)]) == sorted(kinds), (after, kinds, lines)
        at += len(kinds)
    return printed


class Terminal:
    """A process on a pseudo-terminal; what it writes is collected by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.leader, follower = pty.openpty()
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=follower, stdout=follower, stderr=follower)
        os.close(follower)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.leader, 65536)
            except OSError:
                return
            if not data:
                return
            self.chunks.append(data)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=5)
        os.close(self.leader)
        return code


def collect_lines(stream: Any, lines: list[str]) -> None:
    for raw in iter(stream.readline, b""):
        lines.append(raw.decode(errors="replace").rstrip("\n"))


def wait_healthy(api: str, process: Any, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited while starting"
        try:
            if httpx.get(f"{api}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{api}/healthz did not answer within {seconds} s")


def stop(process: subprocess.Popen[Any], sig: int = signal.SIGINT) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout=60)


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


@pytest.fixture
def fresh_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCALATIONS_")}
    env.pop("NO_COLOR", None)
    env |= {
        "ESCALATIONS_DATA_DIR": str(tmp_path / "data"),
        "ESCALATIONS_DEV_SERVER_PORT": str(free_port()),
        "ESCALATIONS_DEV_UI_PORT": str(free_port()),
        "ESCALATIONS_API_PORT": str(free_port()),
        "ESCALATIONS_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
        "ESCALATIONS_WORKER_HEALTH_PORT": str(free_port()),
        "ESCALATIONS_CODEC_SERVER_PORT": str(free_port()),
        "TERM": "xterm-256color",
        "COLUMNS": "160",
    }
    yield env


def test_readme_commands_in_order_on_a_fresh_data_folder(fresh_env: dict[str, str], tmp_path: Path) -> None:
    env = fresh_env
    api = f"http://127.0.0.1:{env['ESCALATIONS_API_PORT']}"
    receiver_port = free_port()
    env["ESCALATIONS_WEBHOOK_URL"] = f"http://127.0.0.1:{receiver_port}/events"
    commands = readme_commands()
    assert any(c.startswith("./dev run") for c, _ in commands) and any("escalations open" in c for c, _ in commands)
    # The blocks that moved to reference pages are still run: the policy's check and simulation, the review.
    assert any("escalations policy simulate" in c for c, _ in commands)
    assert any("escalations review" in c for c, _ in commands) and any("/review?" in c for c, _ in commands)

    # Every file the README's commands name exists in the repository.
    for command, _ in commands:
        for word in shlex.split(command, comments=True):
            name = word.removeprefix("@")
            if re.fullmatch(r"[\w./-]+\.(json|ya?ml)", name):
                assert (ROOT / name).is_file(), f"{command!r} names {name}, which is not in the repository"

    service: Terminal | subprocess.Popen[bytes] | None = None
    background: list[subprocess.Popen[bytes]] = []
    run_log = tmp_path / "run.log"
    seen_terminal = False
    walked: list[str] = []
    outputs: dict[str, str] = {}
    shell_assignments: list[str] = []  # `API=...` lines, in effect for the later commands that use them
    received: list[str] = []  # the receiver's lines
    try:
        for command, expected_error in commands:
            argv = shlex.split(command.replace("\\\n", " "), comments=True)
            began = time.monotonic()
            if not argv or all(re.match(r"^[A-Z_][A-Z0-9_]*=", word) for word in argv):
                shell_assignments.append(command)  # a shell variable (or a setting shown as an example)
                continue
            if argv[:2] == ["./dev", "test"]:
                continue  # that is this test suite
            if argv[:2] == ["./dev", "run"]:
                if service is None:
                    # The first start, in a terminal: console logs a person can read.
                    service = Terminal(argv, env)
                    wait_healthy(api, service.process)
                    print(f"{time.monotonic() - began:5.1f} s  {command} (in a terminal)")
                    continue
                # Again while it runs: one line that says it is already running, and where.
                again = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
                assert again.returncode == 1 and again.stdout == "", again
                assert again.stderr.startswith("error: escalations is already running (pid "), again.stderr
                assert len(again.stderr.splitlines()) == 1 and f"API {api}" in again.stderr
                assert f"data {env['ESCALATIONS_DATA_DIR']}" in again.stderr
                # The user stops the first one (Ctrl-C) and starts this one; its output is piped.
                if isinstance(service, Terminal):
                    service.process.send_signal(signal.SIGINT)
                    assert service.wait() == 0, service.text
                    check_console_logs(strip_ansi(service.text), service.text)
                    seen_terminal = True
                else:
                    assert stop(service) == 0
                service = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=run_log.open("wb"), stderr=subprocess.STDOUT)
                wait_healthy(api, service)
                print(f"{time.monotonic() - began:5.1f} s  second {command}: refused, first stopped, this one started")
                continue
            if argv[0] == ESCALATIONS and argv[1] == "receive":
                # No --port: it listens where ESCALATIONS_WEBHOOK_URL points, as the service posts.
                receiver = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                background.append(receiver)
                assert receiver.stderr is not None and receiver.stdout is not None
                assert f"127.0.0.1:{receiver_port}/events" in receiver.stderr.readline().decode()
                threading.Thread(target=collect_lines, args=(receiver.stdout, received), daemon=True).start()
                continue
            if argv[:3] == [ESCALATIONS, "act", "T-1001"] and not walked:
                # Before acting: the events the README promises, as it lists them.
                walked = wait_for_walkthrough(received)
                print(f"{time.monotonic() - began:5.1f} s  the receiver printed {', '.join(walked)}")
            if "$" in command:  # shell expansion: run as a shell runs it, after the variables set before
                script = "\n".join([*shell_assignments, command.replace("\\\n", " ")])
                done = subprocess.run(
                    ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
                )
            else:
                done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            if expected_error is not None:
                assert done.returncode != 0 and done.stderr.strip() == expected_error, (command, done)
                continue
            assert done.returncode == 0 and "Traceback" not in done.stderr, (command, done)
            outputs[" ".join(argv[:3])] = done.stdout
            print(f"{time.monotonic() - began:5.1f} s  {' '.join(argv)[:80]}")
            if argv[0] == "curl":
                json.loads(done.stdout)  # the API answered JSON, not an error page

        assert walked, "the README lists the events the demo ticket sends before acting on it"
        assert seen_terminal, "the README starts the service twice: first plainly, then with the demo policy"
        status = outputs[f"{ESCALATIONS} status T-1001"]
        assert "ticket_id\tT-1001" in status.splitlines()  # piped: plain text
        assert "T-1001" in outputs[f"{ESCALATIONS} timeline T-1001"]
        assert outputs[f"{ESCALATIONS} policy check"].startswith("ok: config/policies/default.yaml is valid")
        assert "REFUSED escalate" in outputs[f"{ESCALATIONS} policy simulate"]
        assert outputs[f"{ESCALATIONS} review --since"].strip()  # the review of the stored tickets

        # In a terminal, `status` draws a table.
        shown = Terminal([ESCALATIONS, "status", "T-1001"], env)
        assert shown.wait() == 0, shown.text
        assert "│" in shown.text and "T-1001" in shown.text and '{"' not in shown.text
    finally:
        for process in background:
            stop(process, signal.SIGTERM)
        if isinstance(service, Terminal):
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGINT)
                service.wait()
        elif service is not None:
            assert stop(service) == 0

    check_json_logs(run_log.read_text())


def check_console_logs(text: str, raw: str) -> None:
    """A person's terminal: one readable line per event, fields as key=value, no JSON objects."""
    assert "worker.started" in text and "devserver.started" in text and "worker.stopped" in text, text
    started = next(line for line in text.splitlines() if "worker.started" in line)
    assert not started.lstrip().startswith("{") and "task_queue=" in started, started
    assert not [line for line in text.splitlines() if line.lstrip().startswith('{"')], text
    assert "\x1b[" in raw  # coloured, as a terminal may be


def check_json_logs(text: str) -> None:
    """Piped: every line one JSON object, no colour codes, actions logged with their fields."""
    assert "\x1b" not in text and "\\u001b" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) and "event" in line for line in lines)
    assert max(len(json.dumps(line)) for line in lines) < 2000
    actions = [line for line in lines if line["event"] in ("action.accepted", "action.refused")]
    refused = [line for line in actions if line["event"] == "action.refused"]
    accepted = [line for line in actions if line["event"] == "action.accepted"]
    assert refused and accepted, actions
    assert refused[0]["ticket_id"] == "T-1001" and refused[0]["action"] == "escalate"
    assert refused[0]["actor"] == "agent:ann" and "unknown department 'nowhere'" in refused[0]["reason"]
    assert {line["action"] for line in accepted} >= {"acknowledge", "resolve"}
    assert all(line["level"] == "info" and line["ticket_id"] == "T-1001" for line in actions)


if __name__ == "__main__":  # print the commands the test runs
    for command, expected in readme_commands():
        print(command, f"\n    -> {expected}" if expected else "")
    sys.exit(0)
