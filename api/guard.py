"""What stands between any HTTP input and a 500: body limits, JSON checks, error answers.

- `BodyGuard` (ASGI middleware): a body over `api_max_body_bytes` is refused with 413 before it is
  read whole; a body on a JSON route must be `application/json` (415 otherwise) and parse as JSON
  that survives the trip into Temporal: UTF-8, no NaN/Infinity, no number out of float range, no
  lone surrogate, bounded nesting (422 naming where). Webhook routes get the raw bytes untouched
  (their signature is over the bytes; they check the rest after verifying it).
- `install_error_handlers`: 422 bodies never echo what cannot be encoded (lone surrogates, bytes,
  non-finite numbers, megabyte strings), and Temporal's answers become 404/409/413/422/503, never
  a 500. A Temporal server that cannot be reached is 503 with `Retry-After`.
- `safe_json`: turns anything (bytes from a binary payload, non-finite floats, unpaired
  surrogates) into values every JSON encoder accepts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import (
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.retries import TicketStalled

log = structlog.get_logger("api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_ECHO = 120  # characters of a refused value shown back
DRAIN_FACTOR = 16  # an oversized body up to 16x the limit is read to its end before the 413
MAX_DEPTH = 64  # JSON nesting; deeper bodies are refused before anything recurses into them
RAW_BODY_PREFIXES = ("/webhooks/",)  # routes that verify raw bytes themselves
JSON_TYPES = ("application/json",)


def safe_text(value: str, limit: int | None = MAX_ECHO) -> str:
    text = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(text) > limit:
        return f"{text[:limit]}... ({len(value)} characters)"
    return text


def safe_json(value: Any, limit: int | None = None) -> Any:
    """A copy of `value` that any JSON encoder accepts (strings cut to `limit` when given)."""
    if isinstance(value, str):
        return safe_text(value, limit)
    if isinstance(value, bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<binary, {len(bytes(value))} bytes>"
    if isinstance(value, dict):
        return {safe_text(str(k), limit): safe_json(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [safe_json(v, limit) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return safe_text(str(value), limit)


def problem(status: int, loc: list[str | int], msg: str, kind: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": msg, "type": kind}]}, status_code=status)


class _BadJson(Exception):
    def __init__(self, loc: list[str | int], msg: str, kind: str) -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind


def _bad_constant(name: str) -> Any:
    raise _BadJson(["body"], f"{name} is not a number JSON can carry", "json_invalid_number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadJson(["body"], f"number {text[:40]} is out of range", "json_number_out_of_range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 100:
        raise _BadJson(["body"], f"integer of {len(text)} digits is out of range", "json_number_out_of_range")
    return int(text)


def check_json(body: bytes) -> Any:
    """Parse a request body the way the API may accept it, or raise `_BadJson` naming where."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _BadJson(["body"], f"body is not UTF-8 (byte {err.start})", "json_invalid") from None
    try:
        value = json.loads(text, parse_constant=_bad_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except _BadJson:
        raise
    except (ValueError, RecursionError) as err:
        message = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deep"
        raise _BadJson(["body"], f"not JSON: {message}", "json_invalid") from None
    # Walk it (iteratively) for strings Temporal's JSON encoding cannot carry: lone surrogates.
    stack: list[tuple[list[str | int], Any]] = [(["body"], value)]
    while stack:
        loc, item = stack.pop()
        if len(loc) > MAX_DEPTH:
            raise _BadJson(["body"], f"nested deeper than {MAX_DEPTH} levels", "json_too_deep")
        if isinstance(item, str):
            _check_text(loc, item)
        elif isinstance(item, dict):
            for k, v in item.items():
                _check_text([*loc, safe_text(k, 40)], k)
                stack.append(([*loc, k], v))
        elif isinstance(item, list):
            stack.extend(([*loc, i], v) for i, v in enumerate(item))
    return value


def _check_text(loc: list[str | int], text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _BadJson(
            [safe_text(str(p), 40) if isinstance(p, str) else p for p in loc],
            "text holds a lone surrogate (not valid Unicode)",
            "string_unicode",
        ) from None


class BodyGuard:
    """ASGI middleware: body size limit (413), content type (415) and JSON sanity (422)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes * DRAIN_FACTOR:
            await self._refuse(scope, receive, send, self._too_large(), close=True)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.max_body_bytes:
                # Read (and drop) the rest of a moderately oversized body, so that the client,
                # still sending, gets to read the 413 instead of a reset connection.
                while more and size <= self.max_body_bytes * DRAIN_FACTOR:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    size += len(message.get("body", b""))
                    more = message.get("more_body", False)
                await self._refuse(scope, receive, send, self._too_large(), close=more)
                return
            chunks.append(chunk)
        body = b"".join(chunks)
        path: str = scope.get("path", "")
        if body and not path.startswith(RAW_BODY_PREFIXES):
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media and media not in JSON_TYPES and not media.endswith("+json"):
                await self._refuse(
                    scope,
                    receive,
                    send,
                    problem(
                        415,
                        ["header", "content-type"],
                        f"expected application/json, not {safe_text(media, 80)}",
                        "unsupported_media_type",
                    ),
                )
                return
            try:
                check_json(body)
            except _BadJson as bad:
                await self._refuse(scope, receive, send, problem(422, bad.loc, bad.msg, bad.kind))
                return

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> JSONResponse:
        return problem(413, ["body"], f"request body is larger than {self.max_body_bytes} bytes", "body_too_large")

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, response: JSONResponse, close: bool = False
    ) -> None:
        if close:
            response.headers["connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)


def _rpc_answer(err: RPCError) -> JSONResponse:
    message = safe_text(err.message, 300)
    if isinstance(err, TicketStalled):
        return _unavailable(message)
    if err.status == RPCStatusCode.NOT_FOUND:
        return problem(404, ["path", "ticket_id"], "no such ticket", "not_found")
    if err.status == RPCStatusCode.INVALID_ARGUMENT and "size exceeds" in err.message.lower():
        return problem(413, ["body"], f"too large for a ticket's history: {message}", "payload_too_large")
    if err.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.OUT_OF_RANGE):
        return problem(422, ["body"], f"Temporal refused it: {message}", "temporal_invalid_argument")
    if err.status == RPCStatusCode.FAILED_PRECONDITION:
        return problem(409, ["path", "ticket_id"], f"the ticket cannot take this now: {message}", "conflict")
    if err.status == RPCStatusCode.ALREADY_EXISTS:
        return problem(409, ["path", "ticket_id"], message, "conflict")
    if err.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNAUTHENTICATED):
        log.error("temporal.refused_credentials", status=err.status.name)
        return _unavailable("this API's Temporal credentials were refused")
    # UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED, INTERNAL, UNKNOWN...
    log.warning("temporal.unavailable", status=err.status.name, error=message)
    return _unavailable(f"Temporal did not answer ({err.status.name.lower()})")


def _unavailable(msg: str) -> JSONResponse:
    response = problem(503, [], msg, "temporal_unavailable")
    response.headers["Retry-After"] = "5"
    return response


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """A validation failure's errors as the 422 body shows them: bounded, encodable, never echoing
    a container or anything that cannot be encoded."""
    errors = []
    for error in exc.errors():
        entry = {
            "loc": [safe_text(str(p), 80) if isinstance(p, str) else p for p in error.get("loc", ())],
            "msg": safe_text(str(error.get("msg", "")), 500),
            "type": safe_text(str(error.get("type", "")), 80),
        }
        if "input" in error and not isinstance(error["input"], dict | list):
            entry["input"] = safe_json(error["input"], MAX_ECHO)
        errors.append(entry)
    return errors


def install_error_handlers(app: FastAPI) -> None:
    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": validation_errors(exc)}, status_code=422)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"detail": safe_json(exc.detail, 2000)}, status_code=exc.status_code, headers=exc.headers)

    async def rpc(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RPCError)
        return _rpc_answer(exc)

    async def query_failed(_: Request, exc: Exception) -> JSONResponse:
        return problem(409, ["path", "ticket_id"], f"the ticket cannot answer: {safe_text(str(exc), 300)}", "conflict")

    async def update_failed(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, WorkflowUpdateFailedError)
        return problem(
            409, ["path", "ticket_id"], f"the ticket did not apply it: {safe_text(str(exc.cause), 300)}", "conflict"
        )

    async def timed_out(_: Request, exc: Exception) -> JSONResponse:
        log.warning("temporal.timeout", error=type(exc).__name__)
        return _unavailable(f"no answer in time ({safe_text(str(exc), 200)}); is a worker running?")

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RPCError, rpc)
    app.add_exception_handler(WorkflowQueryFailedError, query_failed)
    app.add_exception_handler(WorkflowQueryRejectedError, query_failed)
    app.add_exception_handler(WorkflowUpdateFailedError, update_failed)
    app.add_exception_handler(WorkflowUpdateRPCTimeoutOrCancelledError, timed_out)
    app.add_exception_handler(TimeoutError, timed_out)

    async def runtime(request: Request, exc: Exception) -> JSONResponse:
        # The SDK reports a server it cannot connect to (a lazy client, a restart) this way.
        if "connect" in str(exc).lower():
            log.warning("temporal.unreachable", error=safe_text(str(exc), 300))
            return _unavailable("the Temporal server cannot be reached")
        raise exc

    app.add_exception_handler(RuntimeError, runtime)

    async def overflow(_: Request, exc: Exception) -> JSONResponse:
        # Only input makes arithmetic overflow here (a date at the end of time, a huge number).
        return problem(422, [], f"a value is out of range: {safe_text(str(exc), 200)}", "value_out_of_range")

    app.add_exception_handler(OverflowError, overflow)
