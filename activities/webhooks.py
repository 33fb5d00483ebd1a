"""Standard Webhooks signing and verification (https://www.standardwebhooks.com).

One place for both directions: outbound notifications are signed here, inbound helpdesk webhooks
are verified here (with the timestamp tolerance that refuses replays).
"""

from __future__ import annotations

from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["WebhookVerificationError", "sign_headers", "verify"]


def sign_headers(secret: str, webhook_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """Headers for one delivery attempt. The id is stable across retries; the timestamp is not."""
    when = (now or datetime.now(UTC)).replace(microsecond=0)
    signature = Webhook(secret).sign(webhook_id, when, body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def verify(secret: str, body: bytes, headers: dict[str, str], tolerance_seconds: int = 300) -> None:
    """Raise `WebhookVerificationError` on a bad signature or a timestamp outside the tolerance."""
    lowered = {k.lower(): v for k, v in headers.items()}
    stamp = lowered.get("webhook-timestamp", "")
    if stamp.isdigit():
        age = abs(datetime.now(UTC).timestamp() - int(stamp))
        if age > tolerance_seconds:
            raise WebhookVerificationError("Message timestamp too old")
    Webhook(secret).verify(body, lowered, json_parse=False)
