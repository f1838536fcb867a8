"""Standard Webhooks signatures for outgoing events."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

__all__ = ["signature_headers"]


@functools.lru_cache(maxsize=64)
def _webhook(secret: str) -> Webhook:
    """A signer per secret, made once (it decodes the secret): signing is then one HMAC."""
    return Webhook(secret)


def signature_headers(event_id: str, body: str, secrets: Iterable[str], now: datetime | None = None) -> dict[str, str]:
    """``webhook-id``/``-timestamp``/``-signature`` headers; one ``v1,`` signature per secret (key rotation).

    ``standardwebhooks`` relabels the timestamp's zone instead of converting it, so it gets UTC.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    signatures = [_webhook(secret).sign(event_id, now, body) for secret in dict.fromkeys(secrets)]
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
