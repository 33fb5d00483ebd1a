"""The activity interfaces the workflows call (`workflows/activity_interfaces.py`) match the activities
the worker registers: the same names (recorded in every history), inputs and outputs."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import pytest
from temporalio import activity

from activities.review_activities import ReviewActivities
from activities.store_activities import StoreActivities
from activities.ticket_activities import TicketActivities
from workflows.activity_interfaces import ReviewActivityInterface, StoreActivityInterface, TicketActivityInterface

PAIRS = [
    (TicketActivityInterface, TicketActivities),
    (StoreActivityInterface, StoreActivities),
    (ReviewActivityInterface, ReviewActivities),
]


def _activities(cls: type) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for _, member in inspect.getmembers(cls, inspect.isfunction):
        definition = activity._Definition.from_callable(member)
        if definition is not None and definition.name is not None:
            found[definition.name] = member
    return found


def _types(fn: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(fn)
    return {name: hint for name, hint in hints.items() if name != "self"}


@pytest.mark.parametrize(("interface", "implementation"), PAIRS, ids=lambda c: c.__name__)
def test_every_declared_activity_is_implemented_with_the_same_types(interface: type, implementation: type) -> None:
    declared, implemented = _activities(interface), _activities(implementation)
    assert declared, interface
    assert set(declared) == set(implemented)
    for name, fn in declared.items():
        want = _types(fn)
        got = _types(implemented[name])
        assert list(want.values()) == list(got.values()), name


def test_the_names_in_history_are_the_ones_of_release_1_0() -> None:
    names = {name for interface, _ in PAIRS for name in _activities(interface)}
    assert names == {
        "load_policy",
        "notify",
        "cc_department_heads",
        "reassign",
        "send_digest",
        "store_events",
        "review_find_spikes",
        "review_send_spike",
    }
