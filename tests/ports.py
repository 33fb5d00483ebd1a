"""Free TCP ports for the servers the tests start, safe with two xdist workers and other test runs.

A port the kernel hands out for `bind(("127.0.0.1", 0))` comes from its ephemeral range (Linux:
32768-60999), the same range every outgoing connection takes its source port from: between the
check and the child process's own bind, a connection of another test (or of another test run on the
machine) can take it ("... is taken by another process"). These ports come from below that range,
from a block of its own for each xdist worker, handed out in turn (never twice in a row to the same
caller) and checked free when handed out.
"""

from __future__ import annotations

import os
import socket

_LOW, _BLOCK, _BLOCKS = 20_000, 1_500, 8  # 20000-31999: below the ephemeral range
_cursor = os.getpid() % _BLOCK  # a later run in the same block starts elsewhere


def _worker_block() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    number = int(name[2:]) if name[2:].isdigit() else 0
    return _LOW + (number % _BLOCKS) * _BLOCK


def free_port() -> int:
    global _cursor
    base = _worker_block()
    for _ in range(_BLOCK):
        port = base + _cursor % _BLOCK
        _cursor += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}-{base + _BLOCK - 1}")
