"""A local Zendesk Support API that answers as Zendesk's public documentation says.

A real ThreadingHTTPServer on 127.0.0.1 with state: tickets (group, assignee, priority, status, private
and public comments, email CCs), the API user (`users/me`) and groups. Documented behaviour:
- API token auth: `Authorization: Basic base64("{email}/token:{token}")`, else
  401 `{"error": "Couldn't authenticate you"}`.
- `GET /api/v2/users/me`, `GET /api/v2/groups/{id}`, `GET /api/v2/tickets/{id}`,
  `GET /api/v2/tickets/{id}/comments`, `PUT /api/v2/tickets/{id}` (each also with `.json`);
  `PUT` takes `{"ticket": {...}}` and answers 200 `{"ticket": ..., "audit": ...}`.
- Unknown records: 404 `{"error": "RecordNotFound", "description": "Not found"}`.
- Rate limit: 429 with `Retry-After` (seconds), text body, scripted by `rate_limit_next(n, retry_after)`.
- `down = True`: 503; `stop()`: connections refused (`start()` again binds the same port).

Usage: `with FakeZendesk() as zd: zd.add_group(360001); zd.add_ticket(35436); ... zd.url, zd.requests`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.server import LocalServer

NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
UNAUTHENTICATED = {"error": "Couldn't authenticate you"}
RATE_LIMITED = "Number of allowed API requests per minute exceeded"
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
PRIORITIES = (None, "low", "normal", "high", "urgent")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(field: str, description: str) -> tuple[int, Any]:
    details = {field: [{"description": description, "error": "InvalidValue"}]}
    return 422, {"error": "RecordInvalid", "description": "Record validation errors", "details": details}


class FakeZendesk(LocalServer):
    def __init__(self, email: str = "escalations@example.com", token: str = "zd-api-token-0001", me: int = 900001):
        super().__init__()
        self.email, self.token, self.me = email, token, me
        self.users: dict[int, dict[str, Any]] = {me: {"id": me, "name": "Escalations", "email": email, "role": "admin"}}
        self.groups: dict[int, dict[str, Any]] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.down = False
        self.lock = threading.Lock()
        self._limited, self._retry_after, self._seq = 0, 1, 1000

    # --- state ---------------------------------------------------------------------------------

    def add_group(self, group_id: int, name: str | None = None) -> dict[str, Any]:
        self.groups[group_id] = {"id": group_id, "name": name or f"Group {group_id}", "deleted": False}
        return self.groups[group_id]

    def add_user(self, user_id: int, email: str, role: str = "agent") -> dict[str, Any]:
        self.users[user_id] = {"id": user_id, "name": email.split("@")[0], "email": email, "role": role}
        return self.users[user_id]

    def add_ticket(self, ticket_id: int, **fields: Any) -> dict[str, Any]:
        ticket = {"id": ticket_id, "subject": f"Ticket {ticket_id}", "status": "open", "priority": "normal"}
        ticket |= {"group_id": None, "assignee_id": None, "requester_id": 20978392, "tags": []}
        ticket |= {"comments": [], "email_ccs": [], "created_at": _now(), "updated_at": _now()} | fields
        self.tickets[ticket_id] = ticket
        return ticket

    def rate_limit_next(self, n: int, retry_after: int = 1) -> None:
        """The next `n` authenticated requests answer 429 with `Retry-After: retry_after`."""
        with self.lock:
            self._limited, self._retry_after = n, retry_after

    def _next_id(self) -> int:
        self._seq += 1
        return self._seq

    # --- server --------------------------------------------------------------------------------

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer, extra = fake.answer(Recorded(self.command, self.path, headers, body))
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                kind = "text/plain" if isinstance(answer, str) else "application/json; charset=utf-8"
                for name, value in {"content-type": kind, "content-length": str(len(data)), **extra}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    # --- the API -------------------------------------------------------------------------------

    def _authenticated(self, headers: dict[str, str]) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except ValueError:
            return False
        return scheme.lower() == "basic" and decoded == f"{self.email}/token:{self.token}"

    def answer(self, req: Recorded) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests.append(req)
            if self.down:
                return 503, "Service Unavailable", {}
            if not self._authenticated(req.headers):
                return 401, UNAUTHENTICATED, {}
            if self._limited > 0:
                self._limited -= 1
                return 429, RATE_LIMITED, {"retry-after": str(self._retry_after)}
            status, body = self._route(req.method, req.path.split("?")[0].removesuffix(".json"), req.body)
            return status, body, {}

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "/api/v2/users/me":
            return 200, {"user": self.users[self.me]}
        if (m := re.fullmatch(r"/api/v2/groups/(\d+)", path)) and method == "GET":
            group = self.groups.get(int(m[1]))
            return (200, {"group": group}) if group else (404, NOT_FOUND)
        m = re.fullmatch(r"/api/v2/tickets/(\d+)(/comments)?", path)
        if m is None or method not in ("GET", "PUT") or (m[2] and method != "GET"):
            return 404, {"error": "InvalidEndpoint", "description": "Not found"}
        ticket = self.tickets.get(int(m[1]))
        if ticket is None:
            return 404, NOT_FOUND
        if m[2]:
            comments = ticket["comments"]
            return 200, {"comments": comments, "next_page": None, "previous_page": None, "count": len(comments)}
        if method == "GET":
            return 200, {"ticket": self._public(ticket)}
        try:
            update = json.loads(body)["ticket"]
            assert isinstance(update, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            return 400, {"error": "InvalidValue", "description": 'Expected {"ticket": {...}}'}
        return self._update(ticket, update)

    def _public(self, ticket: dict[str, Any]) -> dict[str, Any]:
        """The ticket as the API shows it: CCs as user ids, comments only through /comments."""
        shown = {k: v for k, v in ticket.items() if k not in ("comments", "email_ccs")}
        by_email = {u["email"]: u["id"] for u in self.users.values()}
        return shown | {"email_cc_ids": [by_email[e] for e in ticket["email_ccs"] if e in by_email]}

    def _update(self, ticket: dict[str, Any], update: dict[str, Any]) -> tuple[int, Any]:
        group, assignee = update.get("group_id", ticket["group_id"]), update.get("assignee_id", ticket["assignee_id"])
        if group is not None and group not in self.groups:
            return _invalid("group", "Group: is invalid")
        if assignee is not None and assignee not in self.users:
            return _invalid("assignee", "Assignee: is invalid")
        if update.get("priority", ticket["priority"]) not in PRIORITIES:
            return _invalid("priority", "Priority: is invalid")
        if update.get("status", ticket["status"]) not in STATUSES:
            return _invalid("status", "Status: is invalid")
        events: list[dict[str, Any]] = []
        for field in ("group_id", "assignee_id", "priority", "status"):
            if field in update and update[field] != ticket[field]:
                change = {"type": "Change", "field_name": field, "value": update[field]}
                events.append(change | {"id": self._next_id(), "previous_value": ticket[field]})
                ticket[field] = update[field]
        for cc in [c for c in update.get("email_ccs") or [] if isinstance(c, dict)]:
            email = cc.get("user_email") or next(
                (u["email"] for u in self.users.values() if u["id"] == cc.get("user_id")), None
            )
            if cc.get("action", "put") == "put" and email and email not in ticket["email_ccs"]:
                ticket["email_ccs"].append(email)
                if email not in {u["email"] for u in self.users.values()}:
                    self.add_user(self._next_id(), email, role="end-user")
            elif cc.get("action") == "delete" and email in ticket["email_ccs"]:
                ticket["email_ccs"].remove(email)
        comment = update.get("comment")
        if isinstance(comment, dict) and (comment.get("body") or comment.get("html_body")):
            text = comment.get("body") or comment.get("html_body")
            public = comment.get("public", True) is not False
            added = {"id": self._next_id(), "type": "Comment", "author_id": self.me, "body": text}
            ticket["comments"].append(added | {"public": public, "created_at": _now()})
            events.append({"id": added["id"], "type": "Comment", "body": text, "public": public})
        ticket["updated_at"] = _now()
        audit = {"id": self._next_id(), "ticket_id": ticket["id"], "created_at": ticket["updated_at"]}
        return 200, {"ticket": self._public(ticket), "audit": audit | {"author_id": self.me, "events": events}}
