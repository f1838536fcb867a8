"""What a registration's parts cost depends on what runs between them: ``python -m tests.bench.parts_conditions``.

Row 3 sets relay's own code (relay serve's CPU above its floor's, measured in a busy server) beside the parts a
registration cannot skip, timed alone in tight loops (tests/bench/parts.py). This times the same parts three
ways: as the bench does; one registration's six parts in turn; and in turn with other Python work between
registrations (a JSON round trip, a regex, a sort, as a server runs other code between two handlers). Each
registration's parts are timed by ``thread_time`` around them, the clock's own cost taken off, so the other work
is never counted. Not part of ``make test``: a figure, printed, never asserted (docs/performance.md, "The method").
"""

from __future__ import annotations

import gc
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.bench.harness import SECRET
from tests.bench.parts import registration_calls, timed
from tests.bench.register import BODY

ROUNDS = 20_000
_BIG = {f"key{i}": [i, str(i) * 3, {"x": i / 3}] for i in range(300)}
_WORDS = " ".join(f"w{i}" for i in range(2000))
_RX = re.compile(r"w(\d+)7\b")


def other_work() -> None:
    """About what a server runs between two registrations' handlers, in Python and C: JSON both ways, a regex,
    a sort, formatting."""
    json.loads(json.dumps(_BIG))
    _RX.findall(_WORDS)
    sorted(random.random() for _ in range(200))
    "".join(f"{k}={v!r};" for k, v in list(_BIG.items())[:100])


def _clock_ns() -> float:
    reads = []
    for _ in range(ROUNDS):
        a = time.thread_time_ns()
        reads.append(time.thread_time_ns() - a)
    return statistics.median(reads)


def in_turn(between: Callable[[], Any] | None = None, rounds: int = ROUNDS) -> float:
    """Mean µs of one registration's six parts called in turn (``between``: called before each registration,
    not counted)."""
    parts = list(registration_calls(BODY, SECRET, rounds + 10).values())
    clock = _clock_ns()
    spent = 0.0
    for _ in range(rounds):
        if between is not None:
            between()
        a = time.thread_time_ns()
        for part in parts:
            part()
        spent += time.thread_time_ns() - a - clock
    return spent / rounds / 1000


def main() -> int:
    if "--no-gc" in sys.argv:
        gc.disable()
    calls = registration_calls(BODY, SECRET, 3 * ROUNDS + 10)
    alone = {name: timed(call, ROUNDS) for name, call in calls.items()}
    print(f"a registration's parts, µs; {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, gc {gc.isenabled()}")
    print(f"  alone, each in a tight loop (row 3's way)       {sum(alone.values()):7.1f}")
    print(f"  one registration's parts in turn                {in_turn():7.1f}")
    print(f"  in turn, other work between registrations      {in_turn(other_work):7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
