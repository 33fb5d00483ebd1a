"""A module-level cache of the policies tickets froze, one validated `Policy` per fingerprint.

Workflows rebuild their policy from the snapshot in their history at every start and replay;
sharing one decoded object per fingerprint saves each open ticket its own copy.
"""

from __future__ import annotations

from typing import Any

from config.model import Policy
from config.schema import FROZEN

_SNAPSHOTS: dict[str, Policy] = {}
_SNAPSHOTS_MAX = 64


def policy_from_snapshot(fingerprint: str, document: dict[str, Any]) -> Policy:
    """The `Policy` of a snapshot, validated once per fingerprint and shared by every ticket using it.

    Safe inside workflows: the result depends only on the document (policies are frozen, and the
    fingerprint is a hash of the same document), so sharing changes no decision; it saves each
    open ticket its own copy and each workflow start a full validation.
    """
    cached = _SNAPSHOTS.get(fingerprint)
    if cached is not None:
        return cached
    policy = Policy.model_validate(document, context=FROZEN)
    if len(_SNAPSHOTS) >= _SNAPSHOTS_MAX:
        _SNAPSHOTS.pop(next(iter(_SNAPSHOTS)))
    _SNAPSHOTS[fingerprint] = policy
    return policy
