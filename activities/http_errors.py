"""How an HTTP answer from a receiver or the helpdesk becomes an activity error, in one place.

4xx (but 408 and 429) is final; 429 is retried after the receiver's `Retry-After`; everything
else is retried by Temporal. All are benign: expected failures the workflow shows on the ticket.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

# Expected failures (a receiver down, a 4xx): the workflow retries and shows them on the ticket;
# benign keeps the SDK from logging a traceback for each try.
BENIGN = ApplicationErrorCategory.BENIGN


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    return timedelta(seconds=int(value)) if value.isdigit() else None


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Nothing for a 1xx-3xx answer; else the `ApplicationError` that says whether to retry."""
    code = response.status_code
    if code < 400:
        return
    message = f"{what} answered HTTP {code}"
    if code == 429:
        raise ApplicationError(message, type="RateLimited", next_retry_delay=_retry_after(response), category=BENIGN)
    if 400 <= code < 500 and code != 408:
        raise ApplicationError(message, type="DeliveryRejected", non_retryable=True, category=BENIGN)
    raise ApplicationError(message, type="DeliveryFailed", category=BENIGN)
