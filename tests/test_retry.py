"""Retries in one room (relay/core/retry.py): the pure decision a worker carries out after a failed delivery or
DriveItem resolution. The workers doing it on real servers: tests/test_delivery.py, tests/test_retry_after.py."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from relay.config.settings import Settings
from relay.core.retry import (
    ARQ_MAX_TRIES,
    RESOLUTION_TRIES,
    DeliveryDecision,
    RetryPolicy,
    delivery_decision,
    delivery_delay,
    resolution_retry,
)
from relay.core.schema import DeliveryOutcome
from workers.main import WorkerSettings
from workers.resolve import RESOLVE_TASK

POLICY = RetryPolicy(delivery_schedule=(0.0, 5.0, 300.0), retry_after_cap=600.0)
NOW = 1_700_000_000.0


def http_date(unix_seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(unix_seconds, UTC), usegmt=True)


def decide(status: int | None, attempt: int = 1, retry_after: str | None = None, seed: int = 0) -> DeliveryDecision:
    return delivery_decision(status, attempt, retry_after, NOW, POLICY, random.Random(seed))


def test_the_policy_is_the_settings_of_the_same_names() -> None:
    settings = Settings(delivery_schedule=(0, 1.5, 10), retry_after_cap=42.0)
    assert RetryPolicy.of(settings) == RetryPolicy(delivery_schedule=(0.0, 1.5, 10.0), retry_after_cap=42.0)


def test_delivery_delay_follows_schedule_then_stops() -> None:
    rng = random.Random(3)
    schedule = (0.0, 5.0, 300.0)
    assert delivery_delay(0, schedule, rng) == 0.0
    assert 4.0 <= (delivery_delay(1, schedule, rng) or 0) <= 6.0
    assert 240.0 <= (delivery_delay(2, schedule, rng) or 0) <= 360.0
    assert delivery_delay(3, schedule, rng) is None


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_a_2xx_is_delivered_whatever_else_it_says(status: int) -> None:
    assert decide(status, attempt=9, retry_after="60") == DeliveryDecision(DeliveryOutcome.DELIVERED)


def test_410_is_gone_at_once() -> None:
    assert decide(410) == DeliveryDecision(DeliveryOutcome.GONE)
    assert decide(410, attempt=3) == DeliveryDecision(DeliveryOutcome.GONE)  # even with the schedule spent


@pytest.mark.parametrize("status", [None, 301, 400, 401, 404, 408, 429, 500, 502, 503])
def test_anything_else_follows_the_schedule_and_then_is_dead(status: int | None) -> None:
    first, second, third = (decide(status, attempt=n) for n in (1, 2, 3))
    assert first.outcome is second.outcome is DeliveryOutcome.FAILED
    assert 4.0 <= first.delay <= 6.0  # the schedule's second step, for attempt 2
    assert 240.0 <= second.delay <= 360.0
    assert third == DeliveryDecision(DeliveryOutcome.DEAD)


def test_the_jitter_comes_from_the_caller_s_random() -> None:
    assert decide(500, seed=7) == decide(500, seed=7)
    assert len({decide(500, seed=seed).delay for seed in range(20)}) == 20


@pytest.mark.parametrize("status", [429, 503])
def test_a_delivery_waits_at_least_what_429_and_503_ask_up_to_the_cap(status: int) -> None:
    assert decide(status, retry_after="30").delay == 30.0  # more than the step (4-6 s)
    assert 4.0 <= decide(status, retry_after="1").delay <= 6.0  # never sooner than the step
    assert decide(status, retry_after="99999").delay == 600.0  # the cap
    assert decide(status, retry_after=http_date(NOW + 45)).delay == 45.0  # a date counts from the caller's clock
    assert 4.0 <= decide(status, retry_after="soon").delay <= 6.0  # nonsense is ignored


@pytest.mark.parametrize("status", [500, 502, None])
def test_other_failures_ignore_a_retry_after(status: int | None) -> None:
    assert 4.0 <= decide(status, retry_after="30").delay <= 6.0


def test_a_spent_schedule_is_dead_even_when_retry_after_asks_for_more() -> None:
    assert decide(429, attempt=3, retry_after="1") == DeliveryDecision(DeliveryOutcome.DEAD)


def test_a_resolution_without_an_answer_backs_off_then_gives_up() -> None:
    delays = [resolution_retry(attempt, POLICY) for attempt in range(1, RESOLUTION_TRIES + 2)]
    assert delays == [2.0, 4.0, 8.0, None, None]  # the fourth try records its error


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599])
def test_a_resolution_retries_429_and_5xx(status: int) -> None:
    assert resolution_retry(1, POLICY, status) == 2.0
    assert resolution_retry(RESOLUTION_TRIES, POLICY, status) is None


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 408, 410, 499])
def test_a_resolution_gives_up_on_any_other_answer_at_once(status: int) -> None:
    assert resolution_retry(1, POLICY, status, "1", NOW) is None


def test_a_resolution_waits_at_least_what_any_retried_answer_asks_up_to_the_cap() -> None:
    assert resolution_retry(1, POLICY, 500, "30", NOW) == 30.0  # a 5xx's Retry-After counts too
    assert resolution_retry(3, POLICY, 429, "1", NOW) == 8.0  # the backoff is a floor
    assert resolution_retry(1, POLICY, 503, http_date(NOW + 20), NOW) == 20.0
    assert resolution_retry(1, POLICY, 429, "86400", NOW) == 600.0


def test_arq_gives_the_resolution_task_one_try_more_than_it_asks_for() -> None:
    (resolve,) = [f for f in WorkerSettings.functions if f.name == RESOLVE_TASK]
    assert resolve.max_tries == ARQ_MAX_TRIES == RESOLUTION_TRIES + 1
