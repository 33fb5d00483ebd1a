"""Helpdesk connectors: Zendesk, Jira Service Management, Freshdesk, and PagerDuty for paging.

One module each behind the small interface in `base.py`; `CONNECTORS` picks one by the `kind` of a
policy's `helpdesks.<name>` entry. They hold no Temporal code: the delivery activity
(`activities/helpdesk_delivery.py`) and the inbound route (`api/routes/connectors.py`) use them.
"""

from __future__ import annotations

from activities.helpdesks.base import Connector
from activities.helpdesks.freshdesk import Freshdesk
from activities.helpdesks.jira import Jira
from activities.helpdesks.pagerduty import PagerDuty
from activities.helpdesks.zendesk import Zendesk

CONNECTORS: dict[str, Connector] = {c.kind: c for c in (Zendesk(), Jira(), Freshdesk(), PagerDuty())}
