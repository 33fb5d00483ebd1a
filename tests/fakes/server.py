"""The lifecycle every fake helpdesk shares: a ThreadingHTTPServer on 127.0.0.1 (a free port, kept
across `stop()` and `start()`, so a helpdesk can go away and come back at the same address)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LocalServer:
    """Subclasses give `handler()`: the request handler class that answers for them."""

    def __init__(self) -> None:
        self._port = 0
        self._server: ThreadingHTTPServer | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> Self:
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), self.handler())
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
