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
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.simulator import Simulator
from relay.store import keys
from relay.store.clock import MAX_OFFSET
from relay.store.embedded import free_port
from tests.helpers import RELAY, Api, Receiver, ensure_stopped, eventually, loopback_env, running_api, wait_http
from tests.test_actions import copy
from tests.test_end_to_end import job_fields
from tests.test_peer_faults import Peer, ascii_json, running_peer

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


def skewed(command: str, settings: Settings, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    """``relay <command>`` with its wall clock :data:`SKEW` seconds behind."""
    env = loopback_env(
        settings.redis_url,
        RELAY_POLL_INITIAL_INTERVAL="0.1",
        RELAY_POLL_MAX_INTERVAL="0.5",
        LD_PRELOAD=str(LIBFAKETIME),
        FAKETIME=f"-{SKEW}",
        FAKETIME_DONT_FAKE_MONOTONIC="1",  # timeouts and sleeps as usual; only the wall clock is off
        **extra,
    )
    with log.open("wb") as out:
        return subprocess.Popen([RELAY, command], env=env, stdout=out, stderr=out)  # noqa: S603


def skewed_worker(settings: Settings, log: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    return skewed("worker", settings, log, RELAY_WORKER_METRICS_PORT=str(metrics_port))


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


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with running_peer() as p:
        yield p


def stamped(event: dict[str, Any]) -> float:
    """An event's ``timestamp`` (RFC 3339), in seconds since the epoch."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


async def test_events_a_skewed_process_builds_itself_carry_redis_time(
    settings: Settings, redis: Redis, simulator: Simulator, receiver: Receiver, peer: Peer, tmp_path: Path
) -> None:
    """The two events a process stamps itself rather than a script's ``TIME``: the ``job.completed`` of an action
    that finished at once (``relay serve``) and a parked job's ``job.failed`` (the worker's backstop). Both the
    API and the worker 10 minutes behind; before, both events said so (600 s in the past)."""
    port = free_port()
    api_proc = skewed("serve", settings, tmp_path / "api.log", RELAY_PORT=str(port), RELAY_HOST="127.0.0.1")
    worker = skewed_worker(settings, tmp_path / "worker.log", free_port())
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", api_proc)
        async with aiohttp.ClientSession() as session:
            api = Api(f"http://127.0.0.1:{port}", session)
            born = await api.create(**copy(simulator, receiver, "answer=sync"))
            assert born["status"] == "completed"
            peer.monitor = (202, ascii_json({"status": "inProgress", "percentageComplete": 5}))
            parked = await api.create(monitorUrl=f"{peer.base}/monitor/1", callbackUrl=receiver.url)
            # a field that does not read: every claim of its monitor raises, the third parks it (job.failed)
            await redis.hset(keys.job(parked["id"]), "auth_asks", "not a number")
            for job in (born, parked):
                await receiver.wait_for(lambda j=job: receiver.terminal(j["id"]) is not None, timeout=30)
    finally:
        ensure_stopped(api_proc)
        ensure_stopped(worker)
    completed, failed = receiver.terminal(born["id"]), receiver.terminal(parked["id"])
    assert completed is not None and completed["type"] == "job.completed"
    assert failed is not None and failed["type"] == "job.failed" and failed["data"]["error"]["code"] == "internalError"
    for event in (completed, failed):  # Redis' time (this machine's), not the processes' 10 minutes behind
        assert abs(stamped(event) - time.time()) < 60, event
