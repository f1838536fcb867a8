"""Retries in one room: whether a failed delivery or DriveItem resolution is tried again, and when. Pure, no I/O.

A worker reports what one attempt met (the answer's status, or none; its ``Retry-After``; which attempt it was)
and carries out the decision: an outcome and a delay for a delivery, a delay or ``None`` (give up) for a
resolution. Randomness comes from the caller's :class:`random.Random`, the clock from the caller.

- A **delivery** is retried on any answer but 2xx (delivered) and 410 (gone), and on no answer at all, along
  ``RELAY_DELIVERY_SCHEDULE``: each step a uniform draw from 0.8 to 1.2 times the scheduled delay; when the
  schedule is spent the event is dead. A redelivery starts the schedule again (the caller counts from it).
- A **resolution** (the DriveItem ``GET``, an arq task) is retried on no answer (a network error, a credential
  service unavailable), on 429 and on 5xx, after ``2**attempt`` seconds, until its :data:`RESOLUTION_TRIES`th
  try; any other answer is its error at once.
- Both wait at least what a 429 or 503 answer's ``Retry-After`` asks (a resolution: any 5xx), up to
  ``retry_after_cap``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

from relay.core.backoff import parse_retry_after
from relay.core.schema import DeliveryOutcome

__all__ = [
    "ARQ_MAX_TRIES",
    "RESOLUTION_TRIES",
    "DeliveryDecision",
    "RetryPolicy",
    "delivery_decision",
    "delivery_delay",
    "resolution_retry",
]

#: a resolution's tries: the last one records its error instead of asking for another
RESOLUTION_TRIES = 4
#: arq's ``max_tries`` for the resolution task: one more than :data:`RESOLUTION_TRIES`, so that a try arq counts
#: but cut short (a worker stopping) still leaves the last try to record the error
ARQ_MAX_TRIES = RESOLUTION_TRIES + 1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """What retrying takes from the configuration: each field is the setting of the same name
    (:class:`relay.config.settings.Settings`), whose docs say what it means and whose bounds apply."""

    delivery_schedule: tuple[float, ...]
    retry_after_cap: float

    @classmethod
    def of(cls, settings: object) -> RetryPolicy:
        """The policy ``settings`` set: each field read by its name (core never imports the configuration)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class DeliveryDecision:
    outcome: DeliveryOutcome
    #: seconds before the next attempt (a failed attempt only)
    delay: float = 0.0


#: the answers that need no delay, made once (frozen: shared by every attempt they describe)
_DELIVERED = DeliveryDecision(DeliveryOutcome.DELIVERED)
_GONE = DeliveryDecision(DeliveryOutcome.GONE)


def delivery_delay(attempts_made: int, schedule: tuple[float, ...], rng: random.Random) -> float | None:
    """Delay before delivery attempt ``attempts_made + 1``; ``None`` when the schedule is exhausted.

    Each scheduled delay ``d`` becomes a uniform draw from ``[0.8 d, 1.2 d]``.
    """
    if attempts_made >= len(schedule):
        return None
    return schedule[attempts_made] * rng.uniform(0.8, 1.2)


def delivery_decision(
    status: int | None,
    attempt: int,
    retry_after: str | None,
    now: float,
    policy: RetryPolicy,
    rng: random.Random,
) -> DeliveryDecision:
    """What a delivery attempt's answer means: ``status`` (None: no answer, or nothing was sent), ``attempt`` this
    attempt's number since the schedule (re)started (1: the first), ``retry_after`` the answer's header as written
    (a date in it counts from ``now``, Unix seconds)."""
    if status is not None and 200 <= status < 300:
        return _DELIVERED
    if status == 410:
        return _GONE
    delay = delivery_delay(attempt, policy.delivery_schedule, rng)
    if delay is None:
        return DeliveryDecision(DeliveryOutcome.DEAD)
    if status in (429, 503):
        delay = _at_least_asked(delay, retry_after, now, policy)
    return DeliveryDecision(DeliveryOutcome.FAILED, delay)


def resolution_retry(
    attempt: int, policy: RetryPolicy, status: int | None = None, retry_after: str | None = None, now: float = 0.0
) -> float | None:
    """Seconds before a resolution's next try, or ``None``: give up (its error is recorded now).

    ``attempt`` is the try that failed (1: the first); ``status`` its answer, None when there was none (a network
    error, a credential service unavailable); ``retry_after`` the answer's header (a date counts from ``now``).
    """
    if attempt >= RESOLUTION_TRIES:
        return None
    if status is not None and status != 429 and status < 500:
        return None
    delay = float(2**attempt)
    if status is not None:
        delay = _at_least_asked(delay, retry_after, now, policy)
    return delay


def _at_least_asked(delay: float, retry_after: str | None, now: float, policy: RetryPolicy) -> float:
    """``delay``, or longer if ``Retry-After`` asks for it (never longer than the cap)."""
    asked = parse_retry_after(retry_after, now)
    return delay if asked is None else max(delay, min(asked, policy.retry_after_cap))
