"""A real HTTP receiver on 127.0.0.1 for tests: records requests, answers as scripted."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Scripted answers: `fail_next` 5xx count, `status_for_type` per event type; dedups by webhook-id."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    fail_next: int = 0
    status_for_type: dict[str, int] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)
    accepted: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay_seconds: float = 0.0  # a slow receiver: each request waits this long before it is answered
    arrived: list[str] = field(default_factory=list)  # webhook-ids as requests arrive (before the delay)
    status_for_path: dict[str, int] = field(default_factory=dict)  # any path: answer this status

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            bodies = [r.json() for r in self.accepted if r.path == "/events"]
        return [b for b in bodies if type_ is None or b["type"] == type_]

    def answer(self, req: Received) -> int:
        with self.lock:
            self.requests.append(req)
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503
            if req.path in self.status_for_path:
                return self.status_for_path[req.path]
            if req.path == "/events":
                status = self.status_for_type.get(req.json().get("type", ""), 200)
                if status >= 400:
                    return status
                webhook_id = req.headers.get("webhook-id", "")
                if webhook_id in self.seen_ids:
                    return 200  # idempotent receiver: a duplicate is acknowledged, not processed
                self.seen_ids.add(webhook_id)
            self.accepted.append(req)
            return 200


def start_receiver() -> Receiver:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = self.rfile.read(length)
            req = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            receiver = holder["r"]
            with receiver.lock:
                receiver.arrived.append(req.headers.get("webhook-id", ""))
            if receiver.delay_seconds:
                time.sleep(receiver.delay_seconds)
            status = receiver.answer(req)
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_PUT = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["r"] = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return holder["r"]
