"""Pure timing rules: poll backoff, delivery retry delays and ``Retry-After`` parsing.

No I/O here; randomness comes from the caller's :class:`random.Random` so tests are reproducible.
"""

from __future__ import annotations

import email.utils
import random
from datetime import UTC, datetime

__all__ = ["delivery_delay", "parse_retry_after", "poll_delay"]


def poll_delay(streak: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Delay before the next poll after ``streak`` polls in a row that brought nothing new.

    Exponential from ``initial`` doubling up to ``maximum``, with "equal jitter": a uniform draw
    from the upper half of the step, so two jobs registered together drift apart at once while
    the expected delay stays within 25% of the plain exponential step.
    """
    step = min(maximum, initial * 2.0 ** min(max(streak, 0), 62))
    return rng.uniform(step / 2.0, step)


def delivery_delay(attempts_made: int, schedule: tuple[float, ...], rng: random.Random) -> float | None:
    """Delay before delivery attempt ``attempts_made + 1``; ``None`` when the schedule is exhausted.

    Each scheduled delay ``d`` becomes a uniform draw from ``[0.8 d, 1.2 d]``.
    """
    if attempts_made >= len(schedule):
        return None
    base = schedule[attempts_made]
    return base * rng.uniform(0.8, 1.2)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date. ``None`` if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():  # delta-seconds are ASCII digits ("¹".isdigit() is true too)
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())
