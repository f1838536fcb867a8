"""relay.core.events.isoformat: a timestamp's text, the same digits datetime writes."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from relay.core.events import isoformat


def _by_datetime(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_timestamp_reads_as_datetime_writes_it() -> None:
    rng = random.Random(31)
    stamps = [rng.uniform(0, 4e9) for _ in range(20_000)]
    # each millisecond of a few seconds, and the edges where microseconds round up into the next second
    stamps += [1_765_000_000 + ms / 1000 for ms in range(3000)]
    stamps += [1_765_000_000 + s + f for s in range(3) for f in (0.0, 0.9994995, 0.9995, 0.9999995, 0.99999949)]
    stamps += [0.0, 0.0005, 1.5, 253402300798.999]
    for when in stamps:
        assert isoformat(when) == _by_datetime(when), when


def test_an_integer_timestamp_and_a_datetime_read_the_same() -> None:
    assert isoformat(1_765_000_000) == "2025-12-06T05:46:40.000Z"
    assert isoformat(datetime.fromtimestamp(1_765_000_000.25, UTC)) == "2025-12-06T05:46:40.250Z"
    assert isoformat(-1.5) == _by_datetime(-1.5)  # before 1970: datetime's way
