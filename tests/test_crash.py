"""Crash safety: a SIGKILLed worker and a restarted Redis (AOF) lose no event and no job."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from relay.config.settings import Settings
from relay.store.embedded import EmbeddedRedis
from tests.helpers import (
    Api,
    Receiver,
    ensure_stopped,
    loopback_env,
    running_api,
    running_worker,
    start_relay,
    with_settings,
)

COMPLETED = {"status": "completed", "percentageComplete": 100.0, "resourceId": "01ABC"}


def worker_process(redis_url: str, request_timeout: float = 1.0) -> subprocess.Popen[bytes]:
    env = loopback_env(
        redis_url,
        RELAY_POLL_INITIAL_INTERVAL="0.05",
        RELAY_POLL_MAX_INTERVAL="0.3",
        RELAY_REQUEST_TIMEOUT=str(request_timeout),
        RELAY_DELIVERY_SCHEDULE="0,0.1,0.2,0.4",
    )
    return start_relay("worker", env)


async def test_worker_killed_mid_delivery_another_worker_delivers(
    api: Api, simulator: Any, receiver: Receiver, settings: Settings, redis: Any
) -> None:
    first_arrived = asyncio.Event()

    async def hang_first(request: web.Request, n: int) -> web.Response:
        if n == 1:
            first_arrived.set()
            await asyncio.sleep(30)
        return web.Response(status=204)

    receiver.responder = hang_first
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    assert settings.redis_url is not None
    proc = worker_process(settings.redis_url)
    try:
        await asyncio.wait_for(first_arrived.wait(), 20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        ensure_stopped(proc)
    async with running_worker(with_settings(settings, request_timeout=1.0)):
        await receiver.wait_for(lambda: len(receiver.received) >= 2, timeout=20)
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(ids) == 1, "the retry after the crash must reuse the webhook-id"
    assert receiver.terminal(job["id"]) is not None


@pytest.fixture
async def aof_redis() -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(appendonly=True)
    server.start()
    yield server
    server.cleanup()


async def test_redis_restart_with_aof_loses_no_job_and_no_event(
    aof_redis: EmbeddedRedis, simulator: Any, receiver: Receiver, settings: Settings
) -> None:
    custom = with_settings(settings, redis_url=aof_redis.url)
    async with running_api(custom) as api, running_worker(custom):
        ops = [simulator.create(duration=2.5) for _ in range(10)]
        jobs = [await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url) for op in ops]
        await receiver.wait_for(lambda: len(receiver.received) >= 10)
        aof_redis.stop()  # SIGTERM: Redis writes its AOF and exits
        await asyncio.sleep(0.5)
        aof_redis.start()
        await receiver.wait_for(lambda: all(receiver.terminal(j["id"]) for j in jobs), timeout=30)
    for job in jobs:
        events = receiver.events(job["id"])
        seqs = [e["data"]["sequence"] for e in events]
        assert seqs == sorted(seqs)
        assert events[-1]["type"] == "job.completed"


async def test_worker_killed_between_the_completing_write_and_the_resolution_costs_a_lease_not_a_minute(
    api: Api, receiver: Receiver, settings: Settings
) -> None:
    """The poll's write marks the job resolving, then the same worker's GET of the DriveItem hangs and the worker
    is SIGKILLed: the resolution was lost with it. The completed monitor comes back at the lease (the killed
    worker's: 2 + 5 s), where it waited for the minute's recheck (RESOLVE_RECHECK) before."""
    item_asked, killed = asyncio.Event(), asyncio.Event()
    item = {"id": "01ITEM", "name": "copied.txt"}

    async def monitor(_: web.Request) -> web.Response:
        return web.json_response({**COMPLETED, "resourceId": item["id"]}, status=202)

    async def drive_item(_: web.Request) -> web.Response:
        if not item_asked.is_set():  # the first worker's request: it dies waiting for the answer
            item_asked.set()
            await killed.wait()
        return web.json_response(item)

    app = web.Application()
    app.router.add_get("/monitor", monitor)
    app.router.add_get("/v1.0/me/drive/items/{id}", drive_item)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    assert settings.redis_url is not None
    proc = worker_process(settings.redis_url, request_timeout=2.0)
    try:
        job = await api.create(
            monitorUrl=f"{base}/monitor",
            callbackUrl=receiver.url,
            driveItemUrl=f"{base}/v1.0/me/drive/items/{{resourceId}}",
        )
        await asyncio.wait_for(item_asked.wait(), 20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed.set()
        async with running_worker(with_settings(settings, request_timeout=1.0)):
            # well under the minute's recheck: a job left to it fails here
            await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=20)
    finally:
        ensure_stopped(proc)
        killed.set()
        await runner.cleanup()
    done = receiver.terminal(job["id"])
    assert done is not None and done["type"] == "job.completed", done
    assert done["data"]["driveItem"] == item and "resolutionError" not in done["data"]
