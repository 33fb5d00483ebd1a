"""A local PagerDuty Events API v2 that answers as PagerDuty's public documentation says.

`POST /v2/enqueue` with `{routing_key, event_action: trigger|acknowledge|resolve, dedup_key, payload}`:
- 202 `{"status": "success", "message": "Event processed", "dedup_key": ...}` (a key is made up when
  a trigger has none);
- 400 `{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}` for a routing
  key that is not 32 characters, an unknown action, a trigger without summary/source/severity, a
  severity other than critical|error|warning|info, a summary over 1,024 or a dedup_key over 255 characters;
- 429 "Request Limit Exceeded" (no Retry-After), scripted by `rate_limit_next(n)`;
- `down = True`: 503; `stop()`: connections refused (`start()` again binds the same port).

Alerts follow the documented de-duplication: a trigger joins the open alert with its `dedup_key` (or
opens one), acknowledge/resolve apply to the open one and are dropped when there is none.
Usage: `with FakePagerDuty() as pd: ... pd.url, pd.alerts, pd.requests`.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.server import LocalServer

SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Alert:
    dedup_key: str
    summary: str
    severity: str
    status: str = "triggered"
    log: list[str] = field(default_factory=lambda: ["trigger"])


def _problems(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors: list[str] = []
    if not isinstance(event.get("routing_key"), str) or len(event["routing_key"]) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')")
    key = event.get("dedup_key")
    if key is not None and (not isinstance(key, str) or len(key) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not key:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload: dict[str, Any] = event["payload"] if isinstance(event.get("payload"), dict) else {}
        for name in ("summary", "source", "severity"):
            if not isinstance(payload.get(name), str) or not payload[name].strip():
                errors.append(f"'payload.{name}' is missing or blank")
        if isinstance(payload.get("summary"), str) and len(payload["summary"]) > 1024:
            errors.append("'payload.summary' is too long (maximum is 1024 characters)")
        if payload.get("severity") and payload.get("severity") not in SEVERITIES:
            errors.append(
                "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')"
            )
    return errors


class FakePagerDuty(LocalServer):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Recorded] = []
        self.alerts: list[Alert] = []
        self.down = False
        self.lock = threading.Lock()
        self._limited = 0

    def rate_limit_next(self, n: int, retry_after: int | None = None) -> None:
        """The next `n` requests answer 429 (PagerDuty sends no Retry-After; the argument is ignored)."""
        with self.lock:
            self._limited = n

    def open_alert(self, dedup_key: str) -> Alert | None:
        return next((a for a in self.alerts if a.dedup_key == dedup_key and a.status != "resolved"), None)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer = fake.answer(Recorded(self.command, self.path, headers, body))
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status, "Request Limit Exceeded" if status == 429 else None)
                self.send_header("content-type", "text/plain" if isinstance(answer, str) else "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def answer(self, req: Recorded) -> tuple[int, Any]:
        with self.lock:
            self.requests.append(req)
            if self.down:
                return 503, "Service Unavailable"
            if self._limited > 0:
                self._limited -= 1
                return 429, "Request Limit Exceeded"
            if req.method != "POST" or req.path.split("?")[0] != "/v2/enqueue":
                return 404, {"status": "not found", "message": "Not Found"}
            try:
                event = json.loads(req.body)
            except ValueError:
                event = None
            errors = _problems(event) if event is not None else ["Event object is not valid JSON"]
            if errors:
                return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
            return 202, {"status": "success", "message": "Event processed", "dedup_key": self._apply(event)}

    def _apply(self, event: dict[str, Any]) -> str:
        key = event.get("dedup_key") or uuid.uuid4().hex
        alert, action = self.open_alert(key), event["event_action"]
        if action == "trigger" and alert is None:
            payload = event["payload"]
            self.alerts.append(Alert(key, payload["summary"], payload["severity"]))
        elif alert is not None:  # acknowledge or resolve with no open alert: dropped, still 202
            alert.log.append(action)
            alert.status = {"trigger": alert.status, "acknowledge": "acknowledged", "resolve": "resolved"}[action]
        return key
