"""API keys (stored hashed), the caller roles each may use, and which roles each route serves.

`ESCALATIONS_API_KEYS` holds `name:sha256hex:role|role` entries separated by commas. Only hashes
are configured, so a leaked settings file leaks no key. A key whose roles include `system` is a
platform integration and may act for any actor id; any other key may act only as itself.

Caller roles are the workflow's actor roles (`agent`, `lead`, `manager`, `system`) plus the
read-only `auditor`, which exists only at this edge: an auditor reads and reviews, it never acts,
so no workflow model has to know it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from api.docs import API_KEY_SCHEME, BEARER_SCHEME
from config.settings import Settings

# The embedded default's key, so a newcomer can call the API at once. Never accepted when a
# Temporal address is configured (production) unless listed in ESCALATIONS_API_KEYS.
DEV_API_KEY = "dev-only-key"


class CallerRole(StrEnum):
    agent = "agent"
    lead = "lead"
    manager = "manager"
    system = "system"
    auditor = "auditor"


# Who each kind of route serves (the README and docs/api.md have the table).
SYSTEM = frozenset({CallerRole.system})  # opening tickets, customer-side actions
READERS = frozenset({CallerRole.agent, CallerRole.lead, CallerRole.manager, CallerRole.auditor})
REVIEWERS = frozenset({CallerRole.lead, CallerRole.manager, CallerRole.auditor})  # review, full exports
ACTORS = frozenset({CallerRole.agent, CallerRole.lead, CallerRole.manager, CallerRole.system})
OPERATORS = frozenset({CallerRole.lead, CallerRole.manager, CallerRole.system})  # redeliver, discard


@dataclass(frozen=True)
class Caller:
    name: str
    roles: frozenset[CallerRole]

    @property
    def is_system(self) -> bool:
        return CallerRole.system in self.roles

    def serves(self, roles: Iterable[CallerRole]) -> bool:
        return not self.roles.isdisjoint(roles)


class KeyEntryError(ValueError):
    pass


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_name_problem(name: str) -> str | None:
    """Why `name` cannot name a key in `ESCALATIONS_API_KEYS` (None: it can). The entries are
    `name:sha256:roles` separated by commas, and the name is the actor id the key may act as."""
    if not name or len(name) > 200:
        return "1 to 200 characters"
    if any(c in name for c in ":,") or any(not c.isprintable() or c.isspace() for c in name):
        return "no ':', ',', spaces or control characters (they would break the settings entry)"
    return None


def new_key_entry(name: str, roles: list[str]) -> tuple[str, str]:
    """A fresh random key and the settings entry that admits it."""
    problem = key_name_problem(name)
    if problem is not None:
        raise KeyEntryError(f"name {name!r}: {problem}")
    for role in roles:
        CallerRole(role)  # refuses an unknown role
    key = f"esc_{secrets.token_urlsafe(24)}"
    return key, f"{name}:{hash_key(key)}:{'|'.join(roles)}"


def parse_entries(raw: str) -> dict[str, Caller]:
    entries: dict[str, Caller] = {}
    for n, entry in enumerate(filter(None, (e.strip() for e in raw.split(","))), start=1):
        parts = entry.split(":", 2)
        if len(parts) != 3 or len(parts[1]) != 64:
            raise KeyEntryError(f"ESCALATIONS_API_KEYS entry {n}: expected name:sha256hex:role|role")
        name, digest, roles = parts
        try:
            parsed = frozenset(CallerRole(r) for r in roles.split("|") if r)
        except ValueError:
            known = ", ".join(r.value for r in CallerRole)
            message = f"ESCALATIONS_API_KEYS entry {n} ({name}): unknown role in {roles!r} ({known})"
            raise KeyEntryError(message) from None
        entries[digest.lower()] = Caller(name, parsed)
    return entries


class KeyRing:
    def __init__(self, entries: dict[str, Caller]) -> None:
        self._by_hash = entries

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        entries = parse_entries(settings.api_keys)
        if settings.embedded and not entries:
            entries[hash_key(DEV_API_KEY)] = Caller("dev", frozenset(CallerRole))
        return cls(entries)

    def authenticate(self, presented: str | None) -> Caller | None:
        if not presented or len(presented) > 512:
            return None
        digest = hash_key(presented)
        for known, caller in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return caller
        return None


# ---------------------------------------------------------------- routes: who they serve
# Every route declares its roles: `caller: Annotated[Caller, Depends(requires(READERS))]` and
# `openapi_extra=declared(READERS)` on the decorator (tests/test_api_roles.py checks every route of
# the OpenAPI document x every role). A route that holds no data and needs no key (health, the
# webhook verified by its signature, static pages) says so with `openapi_extra=PUBLIC`.
PUBLIC: dict[str, Any] = {"x-public": True}


def declared(roles: Iterable[CallerRole]) -> dict[str, Any]:
    """`openapi_extra` of a route that serves these caller roles."""
    return {"x-roles": sorted(r.value for r in roles)}


def authenticate(
    request: Request,
    x_api_key: Annotated[str | None, Security(API_KEY_SCHEME)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER_SCHEME)] = None,
) -> Caller:
    """The caller of a request (401 without a known key): the key from `X-API-Key` or
    `Authorization: Bearer` (both OpenAPI security schemes, api/docs.py); the key ring is
    `app.state.keys`."""
    keys: KeyRing = request.app.state.keys
    authorization = request.headers.get("authorization")
    presented = x_api_key or (authorization or "").removeprefix("Bearer ").strip() or None
    caller = keys.authenticate(presented)
    if caller is None:
        raise HTTPException(401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"})
    return caller


def requires(roles: Iterable[CallerRole]) -> Callable[..., Caller]:
    """A dependency that answers 403 unless the caller's key has one of `roles`."""
    served = frozenset(roles)

    def check(request: Request, caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if not caller.serves(served):
            have = ", ".join(sorted(caller.roles)) or "none"
            raise HTTPException(
                403, f"key {caller.name!r} (roles {have}) may not use this route; it serves {', '.join(sorted(served))}"
            )
        # Dependencies run before the body is validated: a 422 handler that finds the caller here
        # knows the request came with a key that serves the route (`api/routes/actions.py` records such
        # refusals on the ticket; an unauthenticated request must never write on a ticket).
        request.state.caller = caller
        return caller

    return check
