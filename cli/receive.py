"""`escalations receive`: a local webhook receiver that verifies signatures and prints each event.

For trying the product: it listens where `ESCALATIONS_WEBHOOK_URL` points when that is a local
URL (the same setting sends the service's notices there), else on the policies' default endpoint,
http://127.0.0.1:8099/events. Every event type prints one line, ticket events and the ones about
no single ticket (`review.spike`, digests) alike, and so does a body it cannot read. An event id
counts as seen only once its line is printed, so a repeated `webhook-id` is acknowledged without a
second line, and a retry of one that failed here is printed.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from activities.webhooks import WebhookVerificationError, verify

DEFAULT_PORT = 8099
MAX_BODY = 1_048_576


def printable(line: str) -> str:
    """One terminal line whatever the event holds: control characters (escape sequences, newlines)
    and lone surrogates shown as `?`."""
    clean = "".join(c if c.isprintable() else "?" for c in line)
    return clean.encode("utf-8", "replace").decode("utf-8")


def default_port(webhook_url: str | None) -> int:
    """The port of `ESCALATIONS_WEBHOOK_URL` if it points at this machine, else 8099."""
    if webhook_url:
        with contextlib.suppress(ValueError):
            parts = urlsplit(webhook_url)
            if parts.hostname in ("127.0.0.1", "localhost", "::1") and parts.port:
                return parts.port
    return DEFAULT_PORT


def _names(people: Any) -> str:
    if not isinstance(people, list):
        return ""
    return ", ".join(str(p.get("id", "?")) if isinstance(p, dict) else str(p) for p in people)


def line_for(e: dict[str, Any]) -> str:
    """One line for any event the product sends; fields an event lacks are left out, not guessed."""
    kind = str(e.get("type", "?"))
    parts = [str(e.get("occurred_at", "?")), f"{kind:<18}"]
    if e.get("ticket_id"):
        parts.append(f"ticket {e['ticket_id']} tier {e.get('tier', '?')} {e.get('department', '')}".rstrip())
    elif e.get("department"):  # review.spike: a department's day, not a ticket
        parts.append(f"department {e['department']}" + (f" day {e['day']}" if e.get("day") else ""))
    parts.append(f"to: {_names(e.get('recipients')) or '-'}")
    if cc := _names(e.get("cc")):
        parts.append(f"cc: {cc}")
    if kind == "digest" and isinstance(e.get("entries"), list):
        parts.append(f"{len(e['entries'])} notices")
    parts.append(f"rule: {e.get('rule') or '-'}")
    if e.get("reason"):
        parts.append(f"({e['reason']})")
    return "  ".join(parts)


def serve(port: int, secret: str) -> None:
    seen: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("content-length", 0) or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._answer(400 if length < 0 else 413)
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verify(secret, body, headers)
            except WebhookVerificationError as err:
                print(f"REFUSED (bad signature: {err})", flush=True)
                self._answer(401)
                return
            event_id = headers.get("webhook-id", "")
            with lock:
                if event_id in seen:
                    self._answer(200)
                    return
                try:
                    event = json.loads(body)
                    line = line_for(event) if isinstance(event, dict) else f"?  not an event object: {body[:200]!r}"
                except (ValueError, RecursionError):
                    line = f"?  not JSON ({len(body)} bytes): {body[:200]!r}"
                print(printable(line), flush=True)
                seen.add(event_id)
            self._answer(200)

        do_PUT = do_POST  # the helpdesk reassignment call, when pointed here

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"receiving signed events on http://127.0.0.1:{port}/events (Ctrl-C to stop)", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
