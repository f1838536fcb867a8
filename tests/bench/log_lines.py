"""What one log line costs relay's own code, timed alone in a tight loop: ``python -m tests.bench.log_lines``.

Lines go to ``/dev/null`` through the same configuration relay runs with (:func:`relay.logs.configure`), so
the figure is the processors, the renderer and the write, without a reader. Not part of ``make test``: a figure,
printed, never asserted.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from relay import logs
from relay.core.events import isoformat

ROUNDS = 20_000


def timed(part: Callable[[], Any], rounds: int = ROUNDS) -> float:
    """Microseconds per call of ``part``, the best of five runs of ``rounds`` calls."""
    return min(timeit.repeat(part, number=rounds, repeat=5)) / rounds * 1e6


def log_line_costs(rounds: int = ROUNDS) -> dict[str, float]:
    """µs per line of the lines relay writes most: a worker's line at info, one at a disabled level, an access
    line, a stdlib (arq, aiohttp) line; and an event timestamp."""
    log = structlog.stdlib.get_logger("relay.bench")
    access = logs.AccessLogger(logs.ACCESS_LOG, "")
    request = make_mocked_request("GET", "/v1/jobs/abc")
    response = web.Response(status=200, headers={"X-Request-Id": "0" * 32})
    foreign = logging.getLogger("arq.worker")
    with open(os.devnull, "w") as null:
        logs.configure("json", logging.INFO, null)
        structlog.contextvars.bind_contextvars(job_id="0" * 32)
        try:

            def info() -> None:
                log.info("delivery attempt", event_id="msg_1", type="job.progress", sequence=3, attempt=2,
                         outcome="failed", http_status=500, duration_ms=12.5)  # fmt: skip

            costs = {
                "info line (json)": timed(info, rounds),
                "debug line, level info": timed(lambda: log.debug("polled", status=200), rounds),
                "log.log(INFO, ...)": timed(lambda: log.log(logging.INFO, "event recorded", n=1), rounds),
                "access line": timed(lambda: access.log(request, response, 0.0012), rounds),
                "stdlib line (arq)": timed(lambda: foreign.info("job %s", "x"), rounds),
            }
            logs.configure("console", logging.INFO, null)
            costs["info line (console)"] = timed(info, rounds)
        finally:
            structlog.contextvars.clear_contextvars()
            logs.configure("json", logging.WARNING)
    now = time.time()
    costs["event timestamp (isoformat)"] = timed(lambda: isoformat(now), rounds)
    return costs


def main() -> int:
    load = os.getloadavg()[0]
    python = sys.version.split()[0]
    print(f"per log line, µs (best of 5 x {ROUNDS}); {os.cpu_count()} cpus, load {load:.1f}; python {python}")
    for name, us in log_line_costs().items():
        print(f"  {name:<32} {us:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
