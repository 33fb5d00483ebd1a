"""A local Freshdesk account (API v2) answering as Freshdesk's API documentation says.

A real ThreadingHTTPServer on 127.0.0.1, port 0, for connector and end-to-end tests:

    with FakeFreshdesk() as fd:
        fd.add_group(7, "Billing T2"); fd.add_agent(31, "ann@example.com"); fd.add_ticket(35436)
        ... Freshdesk().apply(...) against fd.url with token=fd.api_key ...
        assert fd.tickets[35436]["group_id"] == 7 and fd.notes[35436][0]["private"]

Documented behaviour kept: Basic auth `apikey:X` (else 401 `{"code": "invalid_credentials", ...}`);
`PUT /api/v2/tickets/{id}` 200 with the ticket, priority 1..4, status 2..5, unknown group or agent
400 `{"description": "Validation failed", "errors": [{field, message, code}]}`; `POST .../notes` 201;
`GET /api/v2/agents/me`, `/agents/{id}`, `/groups/{id}`; 404 for an unknown id; every answer carries
`X-RateLimit-Total/Remaining/Used-CurrentRequest`; 429 adds `Retry-After`. `down` answers 503.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.server import LocalServer

Answer = tuple[int, dict[str, str], Any]
TICKET_FIELDS = ("group_id", "responder_id", "priority", "status")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def invalid(*errors: tuple[str, str, str]) -> dict[str, Any]:
    return {"description": "Validation failed", "errors": [{"field": f, "message": m, "code": c} for f, m, c in errors]}


class FakeFreshdesk(LocalServer):
    """State: `agents` and `groups` (id -> record), `tickets` (id -> ticket), `notes` (ticket id -> notes);
    `requests` records every request; `me` is the API key's agent."""

    def __init__(self, api_key: str = "fd-api-key", me: int = 1001, me_email: str = "api@example.com"):
        super().__init__()
        self.api_key, self.me = api_key, me
        self.agents: dict[int, dict[str, Any]] = {}
        self.groups: dict[int, dict[str, Any]] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.requests: list[Request] = []
        self.down = False
        self.limit_total = 3000
        self.lock = threading.Lock()
        self._limited, self._retry_after, self._used = 0, 1, 0
        self._ids = itertools.count(50_000)
        self.add_agent(me, me_email, "Escalations API")

    # ------------------------------------------------------------------ API for tests
    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    def add_agent(self, agent_id: int, email: str, name: str = "Agent") -> dict[str, Any]:
        self.agents[agent_id] = {"id": agent_id, "available": True, "occasional": False, "ticket_scope": 1,
                                 "contact": {"email": email, "name": name, "active": True}}  # fmt: skip
        return self.agents[agent_id]

    def add_group(self, group_id: int, name: str) -> dict[str, Any]:
        self.groups[group_id] = {"id": group_id, "name": name, "agent_ids": [], "unassigned_for": "30m"}
        return self.groups[group_id]

    def add_ticket(self, ticket_id: int, subject: str = "Help", priority: int = 1, status: int = 2) -> dict[str, Any]:
        now = _now()
        self.tickets[ticket_id] = {"id": ticket_id, "subject": subject, "priority": priority, "status": status,
                                   "group_id": None, "responder_id": None, "source": 1, "requester_id": 1,
                                   "created_at": now, "updated_at": now}  # fmt: skip
        self.notes[ticket_id] = []
        return self.tickets[ticket_id]

    def rate_limit_next(self, n: int, retry_after: int = 1) -> None:
        """The next `n` requests answer 429 with `Retry-After: retry_after`."""
        with self.lock:
            self._limited, self._retry_after = n, retry_after

    def calls(self, method: str | None = None) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests if method is None or r.method == method]

    # ------------------------------------------------------------------ the account
    def answer(self, req: Request) -> Answer:
        with self.lock:
            self.requests.append(req)
            self._used += 1
            headers = {"X-RateLimit-Total": str(self.limit_total), "X-RateLimit-Used-CurrentRequest": "1",
                       "X-RateLimit-Remaining": str(max(0, self.limit_total - self._used))}  # fmt: skip
            if self.down:
                return 503, {}, None
            if self._limited > 0:
                self._limited -= 1
                return 429, headers | {"Retry-After": str(self._retry_after), "X-RateLimit-Remaining": "0"}, None
            if _api_key(req.headers.get("authorization", "")) != self.api_key:
                body = {"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}
                return 401, headers, body
            status, extra, body = self._route(req)
            return status, headers | extra, body

    def _route(self, req: Request) -> Answer:
        path = req.path.split("?")[0]
        try:
            body = req.json()
        except ValueError:
            return 400, {}, invalid(("body", "Request body has invalid json format", "invalid_json"))
        if req.method == "GET" and path == "/api/v2/agents/me":
            return 200, {}, self.agents[self.me]
        if m := re.fullmatch(r"/api/v2/(agents|groups)/(\d+)", path):
            found = (self.agents if m.group(1) == "agents" else self.groups).get(int(m.group(2)))
            return (200, {}, found) if found and req.method == "GET" else (404, {}, None)
        m = re.fullmatch(r"/api/v2/tickets/(\d+)(/notes)?", path)
        ticket = self.tickets.get(int(m.group(1))) if m else None
        if m is None or ticket is None:
            return 404, {}, None
        if req.method == "GET" and not m.group(2):
            return 200, {}, ticket
        if req.method == "PUT" and not m.group(2):
            return self._update(ticket, body if isinstance(body, dict) else {})
        if req.method == "POST" and m.group(2):
            return self._note(ticket, body if isinstance(body, dict) else {})
        return 405, {}, {"code": "method_not_allowed", "message": f"{req.method} is not allowed here"}

    def _update(self, ticket: dict[str, Any], body: dict[str, Any]) -> Answer:
        problems = []
        if "priority" in body and body["priority"] not in (1, 2, 3, 4):
            problems.append(("priority", "It should be one of these values: '1,2,3,4'", "invalid_value"))
        if "status" in body and body["status"] not in (2, 3, 4, 5):
            problems.append(("status", "It should be one of these values: '2,3,4,5'", "invalid_value"))
        if body.get("group_id") is not None and body["group_id"] not in self.groups:
            problems.append(("group_id", "There is no group matching the given group_id", "invalid_value"))
        if body.get("responder_id") is not None and body["responder_id"] not in self.agents:
            problems.append(("responder_id", "There is no agent matching the given responder_id", "invalid_value"))
        problems += [
            (k, "Unexpected/invalid field in request", "invalid_field") for k in body if k not in TICKET_FIELDS
        ]
        if problems:
            return 400, {}, invalid(*problems)
        ticket.update({k: body[k] for k in TICKET_FIELDS if k in body}, updated_at=_now())
        return 200, {}, ticket

    def _note(self, ticket: dict[str, Any], body: dict[str, Any]) -> Answer:
        emails = body.get("notify_emails") or []
        problems = [("body", "It should be a/an String", "missing_field")] if not body.get("body") else []
        problems += [("notify_emails", f"It should contain elements that are valid email addresses: {e}",
                      "invalid_value") for e in emails if not EMAIL.match(str(e))]  # fmt: skip
        if problems:
            return 400, {}, invalid(*problems)
        note = {"id": next(self._ids), "body": body["body"], "body_text": re.sub(r"<[^>]*>", " ", body["body"]),
                "private": bool(body.get("private", True)), "incoming": False, "notify_emails": emails,
                "user_id": self.me, "ticket_id": ticket["id"], "created_at": _now()}  # fmt: skip
        self.notes[ticket["id"]].append(note)
        return 201, {}, note


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api_key(authorization: str) -> str | None:
    """The key of `Basic base64(apikey:X)` (any password), or None."""
    if not authorization.startswith("Basic "):
        return None
    try:
        user, _, _ = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user


def _handler(fake: FakeFreshdesk) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = fake.answer(Request(self.command, self.path, headers, body))
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(data)),
                                **extra}.items():  # fmt: skip
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
