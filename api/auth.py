"""API keys (stored hashed) and the roles each may act as; inbound webhook verification.

`ESCALATIONS_API_KEYS` holds `name:sha256hex:role|role` entries separated by commas. Only hashes
are configured, so a leaked settings file leaks no key. A key whose roles include `system` is a
platform integration and may act for any actor id; any other key may act only as itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from config.policy import Role
from config.settings import Settings

# The embedded default's key, so a newcomer can call the API at once. Never accepted when a
# Temporal address is configured (production) unless listed in ESCALATIONS_API_KEYS.
DEV_API_KEY = "dev-only-key"


@dataclass(frozen=True)
class Caller:
    name: str
    roles: frozenset[Role]

    @property
    def is_system(self) -> bool:
        return Role.system in self.roles


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key_entry(name: str, roles: list[str]) -> tuple[str, str]:
    """A fresh random key and the settings entry that admits it."""
    key = f"esc_{secrets.token_urlsafe(24)}"
    return key, f"{name}:{hash_key(key)}:{'|'.join(roles)}"


class KeyRing:
    def __init__(self, entries: dict[str, Caller]) -> None:
        self._by_hash = entries

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        entries: dict[str, Caller] = {}
        for raw in filter(None, (e.strip() for e in settings.api_keys.split(","))):
            name, digest, roles = raw.split(":", 2)
            entries[digest.lower()] = Caller(name, frozenset(Role(r) for r in roles.split("|") if r))
        if settings.embedded and not entries:
            entries[hash_key(DEV_API_KEY)] = Caller("dev", frozenset(Role))
        return cls(entries)

    def authenticate(self, presented: str | None) -> Caller | None:
        if not presented:
            return None
        digest = hash_key(presented)
        for known, caller in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return caller
        return None
