"""The contract's search attributes, typed. Registered by the worker's start-up."""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

TICKET_TIER = SearchAttributeKey.for_int("TicketTier")
TICKET_STATE = SearchAttributeKey.for_keyword("TicketState")
TICKET_PRIORITY = SearchAttributeKey.for_keyword("TicketPriority")
TICKET_CHANNEL = SearchAttributeKey.for_keyword("TicketChannel")
TICKET_CATEGORY = SearchAttributeKey.for_keyword("TicketCategory")
TICKET_DEPARTMENT = SearchAttributeKey.for_keyword("TicketDepartment")
TICKET_ASSIGNEE = SearchAttributeKey.for_keyword("TicketAssignee")
SLA_BREACHED = SearchAttributeKey.for_bool("SlaBreached")
ESCALATION_COUNT = SearchAttributeKey.for_int("EscalationCount")
NEXT_SLA_DEADLINE = SearchAttributeKey.for_datetime("NextSlaDeadline")
# Addition: notices of the ticket not delivered after at least one try (undelivered or failed).
UNDELIVERED_NOTICES = SearchAttributeKey.for_int("UndeliveredNotices")

ALL: list[SearchAttributeKey[Any]] = [
    TICKET_TIER,
    TICKET_STATE,
    TICKET_PRIORITY,
    TICKET_CHANNEL,
    TICKET_CATEGORY,
    TICKET_DEPARTMENT,
    TICKET_ASSIGNEE,
    SLA_BREACHED,
    ESCALATION_COUNT,
    NEXT_SLA_DEADLINE,
    UNDELIVERED_NOTICES,
]

_CLI_TYPES = {"INT": "Int", "KEYWORD": "Keyword", "BOOL": "Bool", "DATETIME": "Datetime"}


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    flags = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={_CLI_TYPES[key.indexed_value_type.name]}"]
    return flags
