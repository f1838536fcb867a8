"""One clock (issue 32): a worker whose clock is 10 minutes behind still signs with the real time.

The worker runs under libfaketime (``faketime``: its wall clock 600 s behind, its monotonic clock left alone);
the receiver checks each webhook's timestamp as Standard Webhooks does (5 minutes of tolerance), which would
refuse every event signed with the worker's own clock. The worker measures Redis' clock, signs with it, logs
one error line about its clock and shows the offset on ``relay_clock_offset_seconds``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.simulator import Simulator
from relay.store.embedded import free_port
from tests.helpers import RELAY, Receiver, ensure_stopped, eventually, loopback_env, running_api
from tests.test_end_to_end import job_fields
from workers.clock import MAX_OFFSET

SKEW = 600  # seconds behind
#: libfaketime, preloaded into the worker itself (the ``faketime`` wrapper forks: killing it would leave the worker)
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


@pytest.fixture(autouse=True)
def _faketime() -> None:
    """Skipped with its reason without libfaketime on a developer's machine; under CI (``CI`` set) a failure:
    .ci/run installs it."""
    if not LIBFAKETIME.exists():
        missing = "libfaketime's faketime is not installed (apt-get install faketime libfaketime)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the skewed-clock test: {missing}")
        pytest.skip(missing)


def skewed_worker(settings: Settings, log: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    env = loopback_env(
        settings.redis_url,
        RELAY_POLL_INITIAL_INTERVAL="0.1",
        RELAY_POLL_MAX_INTERVAL="0.5",
        RELAY_WORKER_METRICS_PORT=str(metrics_port),
        LD_PRELOAD=str(LIBFAKETIME),
        FAKETIME=f"-{SKEW}",
        FAKETIME_DONT_FAKE_MONOTONIC="1",  # timeouts and sleeps as usual; only the wall clock is off
    )
    with log.open("wb") as out:
        return subprocess.Popen([RELAY, "worker"], env=env, stdout=out, stderr=out)  # noqa: S603


async def test_a_worker_with_a_skewed_clock_signs_with_redis_time(
    settings: Settings, redis: Redis, simulator: Simulator, receiver: Receiver, tmp_path: Path
) -> None:
    metrics_port = free_port()
    worker = skewed_worker(settings, tmp_path / "worker.log", metrics_port)
    try:
        async with running_api(settings) as api:
            op = simulator.create(duration=0.5)
            job = await api.create(**job_fields(simulator, op.monitor_url, receiver))
            await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=30)

            async def scraped() -> bool:
                return "relay_clock_offset_seconds" in _metrics(metrics_port)

            await eventually(scraped)
            exposed = _metrics(metrics_port)
    finally:
        ensure_stopped(worker)
    assert receiver.bad_signatures == 0 and len(receiver.verified) == len(receiver.received) >= 1
    for delivered in receiver.received:  # signed with the real time, not the worker's
        assert abs(int(delivered.headers["webhook-timestamp"]) - time.time()) < 60
    offset = next(
        float(line.split()[-1]) for line in exposed.splitlines() if line.startswith("relay_clock_offset_seconds ")
    )
    assert SKEW - 5 < offset < SKEW + 5
    lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["event"].startswith("this machine's clock is off")]
    assert len(errors) == 1 and errors[0]["offset_s"] > MAX_OFFSET, lines


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""
