"""A local Jira Cloud site (REST API v3 and the JSM servicedeskapi) answering as Atlassian documents.

A real ThreadingHTTPServer on 127.0.0.1, port 0, for connector and end-to-end tests:

    with FakeJira() as jira:
        jira.add_issue("SUP-1", summary="Printer on fire")
        ... Jira().apply(...) against jira.url with username=jira.email, token=jira.token ...
        assert jira.issues["SUP-1"]["fields"]["assignee"]["accountId"] == "acct-ann"

Documented behaviour kept: Basic auth `email:api_token` (else 401); `PUT /rest/api/3/issue/{key}/assignee`
and `PUT /rest/api/3/issue/{key}` answer 204; `POST .../transitions` 204; the JSM comment 201; errors
`{"errorMessages": [...], "errors": {...}}` (JSM: `{"errorMessage": ...}`); 429 with `Retry-After`,
`X-RateLimit-Limit/Remaining/Reset` and `RateLimit-Reason`. `down` answers 503 to everything.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.server import LocalServer

Answer = tuple[int, dict[str, str], Any]
PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
TRANSITIONS = (
    ("11", "Start progress", "In Progress"),
    ("21", "Resolve this issue", "Resolved"),
    ("31", "Close", "Closed"),
)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def errors(*messages: str, **fields: str) -> dict[str, Any]:
    return {"errorMessages": list(messages), "errors": fields}


class FakeJira(LocalServer):
    """State: `users` (accountId -> user), `issues` (key -> issue), `comments` (key -> JSM comments),
    `transitions` (key -> available transitions); `requests` records every request."""

    def __init__(self, email: str = "api@example.com", token: str = "jira-api-token", account_id: str = "acct-api"):
        super().__init__()
        self.email, self.token, self.account_id = email, token, account_id
        self.users: dict[str, dict[str, Any]] = {}
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.transitions: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[Request] = []
        self.down = False
        self.lock = threading.Lock()
        self._limited, self._retry_after = 0, 1
        self._ids = itertools.count(10_000)
        self.add_user(account_id, "Escalations API", email)

    # ------------------------------------------------------------------ API for tests
    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    def add_user(self, account_id: str, name: str, email: str | None = None, kind: str = "atlassian") -> dict[str, Any]:
        user = {"accountId": account_id, "accountType": kind, "displayName": name, "active": True}
        self.users[account_id] = user | ({"emailAddress": email} if email else {})
        return self.users[account_id]

    def add_issue(self, key: str, summary: str = "Help", priority: str = "Medium", status: str = "Waiting for support"
                  ) -> dict[str, Any]:  # fmt: skip
        fields = {"summary": summary, "priority": {"name": priority}, "status": {"name": status}, "assignee": None}
        self.issues[key] = {"id": str(next(self._ids)), "key": key, "fields": fields}
        self.comments[key] = []
        self.transitions[key] = [{"id": i, "name": n, "to": {"name": to}} for i, n, to in TRANSITIONS]
        return self.issues[key]

    def rate_limit_next(self, n: int, retry_after: int = 1) -> None:
        """The next `n` requests answer 429 with `Retry-After: retry_after`."""
        with self.lock:
            self._limited, self._retry_after = n, retry_after

    def calls(self, method: str | None = None) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests if method is None or r.method == method]

    # ------------------------------------------------------------------ the site
    def answer(self, req: Request) -> Answer:
        with self.lock:
            self.requests.append(req)
            if self.down:
                return 503, {}, "Service Unavailable"
            if self._limited > 0:
                self._limited -= 1
                reset = (datetime.now(UTC) + timedelta(seconds=self._retry_after)).strftime("%Y-%m-%dT%H:%MZ")
                headers = {"Retry-After": str(self._retry_after), "X-RateLimit-Limit": "100",
                           "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset,
                           "RateLimit-Reason": "jira-burst-based"}  # fmt: skip
                return 429, headers, errors("Rate limit exceeded.")
            if req.headers.get("authorization") != _basic(self.email, self.token):
                return 401, {}, "Client must be authenticated to access this resource."
            return self._route(req)

    def _route(self, req: Request) -> Answer:
        parts = urlsplit(req.path)
        path, query = parts.path, parse_qs(parts.query)
        try:
            body = req.json()
        except ValueError:
            return 400, {}, errors("Unexpected character in the request body.")
        if req.method == "GET" and path == "/rest/api/3/myself":
            return 200, {}, self.users[self.account_id]
        if req.method == "GET" and path == "/rest/api/3/user":
            user = self.users.get((query.get("accountId") or [""])[0])
            return (200, {}, user) if user else (404, {}, errors("Specified user does not exist or you do not have "
                                                                 "required permissions"))  # fmt: skip
        match = re.fullmatch(r"/rest/(?:api/3/issue|servicedeskapi/request)/([^/]+)(/\w+)?", path)
        issue = self.issues.get(match.group(1)) if match else None
        if match is None:
            return 404, {}, errors("null for uri: " + path)
        if issue is None:
            if path.startswith("/rest/servicedeskapi/"):
                return 404, {}, {"errorMessage": "The request could not be found.", "i18nErrorMessage": {}}
            return 404, {}, errors("Issue does not exist or you do not have permission to see it.")
        return self._issue(req.method, path.split("/")[2], match.group(2) or "", issue, body)

    def _issue(self, method: str, api: str, tail: str, issue: dict[str, Any], body: Any) -> Answer:
        key, fields = issue["key"], issue["fields"]
        if (method, api, tail) == ("GET", "api", ""):
            return 200, {}, issue
        if (method, api, tail) == ("PUT", "api", "/assignee"):
            account = (body or {}).get("accountId")
            if account is not None and account not in self.users:
                return 400, {}, errors(assignee=f"User '{account}' cannot be assigned issues.")
            fields["assignee"] = self.users[account] if account else None
            return 204, {}, None
        if (method, api, tail) == ("PUT", "api", ""):
            priority = ((body or {}).get("fields") or {}).get("priority")
            if priority is not None:
                if (priority or {}).get("name") not in PRIORITIES:
                    return 400, {}, errors(priority="The priority selected is invalid.")
                fields["priority"] = {"name": priority["name"]}
            return 204, {}, None
        if (method, api, tail) == ("GET", "api", "/transitions"):
            return 200, {}, {"expand": "transitions", "transitions": self.transitions[key]}
        if (method, api, tail) == ("POST", "api", "/transitions"):
            wanted = str(((body or {}).get("transition") or {}).get("id"))
            found = next((t for t in self.transitions[key] if t["id"] == wanted), None)
            if found is None:
                return 400, {}, errors(f"Transition id '{wanted}' is not valid for this issue.")
            fields["status"] = {"name": found["to"]["name"]}
            return 204, {}, None
        if (method, api, tail) == ("POST", "servicedeskapi", "/comment"):
            if not isinstance((body or {}).get("body"), str) or not body["body"].strip():
                return 400, {}, {"errorMessage": "The comment body is required.", "i18nErrorMessage": {}}
            now = datetime.now(UTC)
            comment = {"id": str(next(self._ids)), "body": body["body"], "public": bool(body.get("public", True)),
                       "author": self.users[self.account_id],
                       "created": {"iso8601": now.isoformat(), "epochMillis": int(now.timestamp() * 1000)}}  # fmt: skip
            self.comments[key].append(comment)
            return 201, {}, comment
        return 405, {}, errors(f"{method} is not supported here")


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def _handler(fake: FakeJira) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = fake.answer(Request(self.command, self.path, headers, body))
            data = (
                b""
                if payload is None
                else payload.encode()
                if isinstance(payload, str)
                else json.dumps(payload).encode()
            )
            self.send_response(status)
            kind = "text/plain" if isinstance(payload, str) else "application/json;charset=UTF-8"
            for name, value in {"Content-Type": kind, "Content-Length": str(len(data)), **extra}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
