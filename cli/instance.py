"""One `escalations run` per data folder: a second one says, in one line, that it is already running and where.

The embedded default keeps its Temporal database in the data folder; two services on one folder
would start a second worker beside the first and then fail on the API port. The first process
holds an exclusive lock on `<data dir>/run.lock` (released by the OS when it exits, however it
exits) and writes there where it serves.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from typing import IO, Any

from cli.app import unreachable


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host if host not in ("0.0.0.0", "") else "127.0.0.1", port)) == 0


def where(config: Any, with_api: bool) -> dict[str, Any]:
    info: dict[str, Any] = {"pid": os.getpid(), "temporal": config.address}
    if config.embedded:
        info["web_ui"] = f"http://127.0.0.1:{config.dev_ui_port}"
        info["data"] = str(config.data_dir)
    if with_api:
        info["api"] = f"http://{config.api_host}:{config.api_port}"
    return info


def _describe(info: dict[str, Any]) -> str:
    parts = [f"pid {info.get('pid', '?')}"]
    if info.get("api"):
        parts.append(f"API {info['api']}")
    parts.append(f"Temporal {info.get('temporal', '?')}")
    if info.get("web_ui"):
        parts.append(f"Web UI {info['web_ui']}")
    if info.get("data"):
        parts.append(f"data {info['data']}")
    return ", ".join(parts)


@contextlib.contextmanager
def single_instance(config: Any, with_api: bool) -> Iterator[None]:
    """Hold the data folder's run lock while the service runs; exit 1 in one line if another holds it."""
    lock: IO[str] | None = None
    if config.embedded:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        path = config.data_dir / "run.lock"
        lock = path.open("a+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            try:
                info = json.loads(lock.read() or "{}")
            except json.JSONDecodeError:
                info = {}
            lock.close()
            unreachable(f"escalations is already running ({_describe(info)}); stop it first, or use its API")
        lock.seek(0)
        lock.truncate()
        lock.write(json.dumps(where(config, with_api)))
        lock.flush()
    try:
        if with_api and _port_taken(config.api_host, config.api_port):
            unreachable(
                f"cannot start: {config.api_host}:{config.api_port} is in use by another program "
                "(set ESCALATIONS_API_PORT, or stop that program)"
            )
        yield
    finally:
        if lock is not None:
            lock.close()
