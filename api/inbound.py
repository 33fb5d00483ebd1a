"""Inbound helpdesk webhooks: verification (every failure is a 401 with its reason) and replays.

A replay is a `webhook-id` seen again inside the timestamp tolerance (older ones fail the
timestamp check). Two layers refuse it:

1. `SeenIds`, in this process: an id is claimed while its request runs and kept for twice the
   tolerance once it was answered with anything but a 5xx, so a sender's retry after a 503 (the
   Temporal server was down) is still accepted, and a concurrent duplicate is refused.
2. Temporal itself, which survives an API restart and is shared by every API replica: an action
   is sent as an update whose id is `webhook:<webhook-id>`; before sending it the API asks the
   ticket whether that update already exists (401 if so), and should two replicas race, Temporal
   applies one update id once. A `ticket.created` replay attaches to the running ticket (opening
   is idempotent on the ticket id), so it changes nothing either.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from fastapi import HTTPException
from standardwebhooks.webhooks import Webhook

T = TypeVar("T")

MAX_ID_LENGTH = 200
MAX_SEEN = 100_000


class InboundRefused(Exception):
    """Verification failed; the message says why (it is the 401's detail)."""


def verify_inbound(secret: str, body: bytes, headers: dict[str, str], tolerance_seconds: int) -> str:
    """The verified webhook id, or `InboundRefused`. Never raises anything else."""
    webhook_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signature = headers.get("webhook-signature", "")
    if not webhook_id or not signature or not stamp:
        missing = [
            h
            for h, v in (("webhook-id", webhook_id), ("webhook-timestamp", stamp), ("webhook-signature", signature))
            if not v
        ]
        raise InboundRefused(f"missing header {', '.join(missing)}")
    if len(webhook_id) > MAX_ID_LENGTH or not webhook_id.isascii() or not webhook_id.isprintable():
        raise InboundRefused(f"webhook-id must be printable ASCII of at most {MAX_ID_LENGTH} characters")
    if not stamp.isdigit() or len(stamp) > 12:
        raise InboundRefused("webhook-timestamp is not a Unix timestamp in seconds")
    if abs(datetime.now(UTC).timestamp() - int(stamp)) > tolerance_seconds:
        raise InboundRefused(f"webhook-timestamp is more than {tolerance_seconds} s away from now")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise InboundRefused("body is not UTF-8") from None
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except Exception:  # garbage signatures raise ValueError, binascii.Error, ...: all one answer
        raise InboundRefused("webhook-signature does not match the body") from None
    return webhook_id


class SeenIds:
    """Webhook ids this process has answered (or is answering), for twice the tolerance."""

    def __init__(self, tolerance_seconds: int) -> None:
        self._keep = 2 * tolerance_seconds
        self._until: OrderedDict[str, float] = OrderedDict()
        self._running: set[str] = set()

    def claim(self, webhook_id: str) -> bool:
        """True if the id is new here; it is then held until `done` or `release`."""
        now = time.monotonic()
        while self._until:
            _oldest, until = next(iter(self._until.items()))
            if until > now and len(self._until) <= MAX_SEEN:
                break
            self._until.popitem(last=False)
        if webhook_id in self._until or webhook_id in self._running:
            return False
        self._running.add(webhook_id)
        return True

    def done(self, webhook_id: str) -> None:
        self._running.discard(webhook_id)
        self._until[webhook_id] = time.monotonic() + self._keep
        self._until.move_to_end(webhook_id)

    def release(self, webhook_id: str) -> None:
        """The request failed on our side (5xx): a retry with this id is welcome."""
        self._running.discard(webhook_id)

    async def answer_once(self, webhook_id: str, respond: Callable[[], Awaitable[T]]) -> T:
        """`respond()` for an id just claimed: the id stays seen after any answer but a 5xx or an
        error of ours, which release it for the sender's retry."""
        try:
            answer = await respond()
        except HTTPException as err:
            (self.done if err.status_code < 500 else self.release)(webhook_id)
            raise
        except BaseException:
            self.release(webhook_id)
            raise
        self.done(webhook_id)
        return answer
