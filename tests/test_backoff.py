from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from relay.core.backoff import delivery_delay, parse_retry_after, poll_delay


def test_poll_delay_grows_and_is_capped() -> None:
    rng = random.Random(1)
    steps = [poll_delay(n, 1.0, 60.0, rng) for n in range(12)]
    for n, delay in enumerate(steps):
        step = min(60.0, 2.0**n)
        assert step / 2 <= delay <= step
    assert max(steps) <= 60.0


def test_poll_delay_has_jitter() -> None:
    rng = random.Random(2)
    assert len({round(poll_delay(3, 1.0, 60.0, rng), 6) for _ in range(20)}) > 15


def test_delivery_delay_follows_schedule_then_stops() -> None:
    rng = random.Random(3)
    schedule = (0.0, 5.0, 300.0)
    assert delivery_delay(0, schedule, rng) == 0.0
    assert 4.0 <= (delivery_delay(1, schedule, rng) or 0) <= 6.0
    assert 240.0 <= (delivery_delay(2, schedule, rng) or 0) <= 360.0
    assert delivery_delay(3, schedule, rng) is None


def test_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None


def test_retry_after_takes_only_ascii_digits_as_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("¹") is None and parse_retry_after("١٢") is None
