#!/bin/sh
# Creates the product's namespace with its retention and registers the contract's search attributes
# (workflows/search_attributes.py; tests/test_deployment.py checks this list against it). Idempotent.
set -eu
: "${TEMPORAL_ADDRESS:?}" "${NAMESPACE:?}" "${RETENTION:?}"
until temporal operator cluster health --address "$TEMPORAL_ADDRESS"; do sleep 2; done
temporal operator namespace describe --address "$TEMPORAL_ADDRESS" -n "$NAMESPACE" >/dev/null 2>&1 ||
  temporal operator namespace create --address "$TEMPORAL_ADDRESS" -n "$NAMESPACE" --retention "$RETENTION"
temporal operator namespace update --address "$TEMPORAL_ADDRESS" -n "$NAMESPACE" --retention "$RETENTION"
add() {
  temporal operator search-attribute create --address "$TEMPORAL_ADDRESS" -n "$NAMESPACE" --name "$1" --type "$2" ||
    echo "search attribute $1 exists"
}
add TicketTier Int
add TicketState Keyword
add TicketPriority Keyword
add TicketChannel Keyword
add TicketCategory Keyword
add TicketDepartment Keyword
add TicketAssignee Keyword
add SlaBreached Bool
add EscalationCount Int
add NextSlaDeadline Datetime
add UndeliveredNotices Int
echo "namespace $NAMESPACE ready"
