"""Pure timing rules: poll backoff and ``Retry-After`` parsing (retrying deliveries and resolutions:
:mod:`relay.core.retry`).

No I/O here; randomness comes from the caller's :class:`random.Random` so tests are reproducible.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from datetime import UTC, datetime

__all__ = ["parse_retry_after", "poll_delay"]

#: delta-seconds, with the fraction Graph writes (``2.128``); ASCII digits only
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def poll_delay(streak: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Delay before the next poll after ``streak`` polls in a row that brought nothing new.

    Exponential from ``initial`` doubling up to ``maximum``, with "equal jitter": a uniform draw
    from the upper half of the step, so two jobs registered together drift apart at once while
    the expected delay stays within 25% of the plain exponential step.
    """
    step = min(maximum, initial * 2.0 ** min(max(streak, 0), 62))
    return rng.uniform(step / 2.0, step)


def parse_retry_after(value: str | None, now: datetime | float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header; ``None`` if absent or bad.

    HTTP's two forms (RFC 9110 10.2.3): delta-seconds and an HTTP-date, which counts from ``now`` (a datetime,
    or Unix seconds: the caller's clock, e.g. Redis' TIME; the local clock when None). Graph also writes
    delta-seconds with a fraction (``Retry-After: 2.128`` in its throttling documentation): taken as written.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):  # ASCII digits only ("¹".isdigit() is true too)
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now is None:
        now = datetime.now(UTC)
    elif not isinstance(now, datetime):
        now = datetime.fromtimestamp(now, UTC)
    return max(0.0, (when - now).total_seconds())
