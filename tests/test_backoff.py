from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from relay.core.backoff import parse_retry_after, poll_delay


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


def test_retry_after_takes_the_fraction_graph_writes() -> None:
    # Graph's throttling documentation: "HTTP/1.1 429 Too Many Requests ... Retry-After: 2.128"
    assert parse_retry_after("2.128") == 2.128
    assert parse_retry_after(" 0.5 ") == 0.5
    for bad in ("2.", ".5", "-1", "+3", "1e3", "2,5", "1.2.3", "inf", "nan", "9" * 400):
        assert parse_retry_after(bad) is None, bad


def test_retry_after_dates_in_every_form_http_accepts_count_from_the_given_clock() -> None:
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)
    # RFC 9110 5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms a recipient must accept
    for form in ("Wed, 21 Oct 2015 07:28:00 GMT", "Wednesday, 21-Oct-15 07:28:00 GMT", "Wed Oct 21 07:28:00 2015"):
        assert parse_retry_after(form, now) == 30.0, form
    # the clock may be Unix seconds (the worker passes Redis' TIME), not only a datetime
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now.timestamp() + 10) == 20.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now.timestamp() + 90) == 0.0
