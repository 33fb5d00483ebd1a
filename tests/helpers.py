"""Small builders shared by the workflow tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from workflows.models import Ticket

T = TypeVar("T")

AGENT = {"id": "ann", "role": "agent", "tier": 1}
LEAD = {"id": "lee.lead", "role": "lead", "tier": 2}
MANAGER = {"id": "dana.head", "role": "manager"}


def ticket(**fields: Any) -> Ticket:
    base: dict[str, Any] = {
        "ticket_id": f"T-{uuid.uuid4().hex[:8]}",
        "subject": "Cannot log in",
        "channel": "email",
        "category": "account",
        "priority": "normal",
        "customer": {"id": "c-1", "email": "c@example.com"},
    }
    base.update(fields)
    return Ticket.model_validate(base)


def without_elapsed(status: BaseModel) -> dict[str, Any]:
    """A status minus what moves with the clock by itself, for 'the ticket is unchanged' checks."""
    dump = status.model_dump()
    dump.pop("refused_actions", None)  # a refusal is counted (and recorded); nothing else changes
    for clock in dump.get("clocks", []):
        clock.pop("elapsed", None)
    return dump


async def until(read: Callable[[], list[T]], count: int = 1, seconds: float = 10) -> list[T]:
    """Poll `read` (real time) until it returns at least `count` items: deliveries run in the background."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = read()
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)


async def until_async(read: Callable[[], Awaitable[list[T]]], count: int = 1, seconds: float = 10) -> list[T]:
    """`until` for reads that are themselves awaited (queries)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await read()
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)
