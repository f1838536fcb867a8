"""Graceful shutdown: SIGTERM lets in-flight work finish; nothing is lost or sent twice."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from aiohttp import web

from relay.settings import Settings
from tests.conftest import Api
from tests.helpers import Receiver
from tests.test_crash import COMPLETED, worker_process


async def test_sigterm_on_a_worker_finishes_the_delivery_in_flight(
    api: Api, simulator: Any, receiver: Receiver, settings: Settings, redis: Any
) -> None:
    arrived = asyncio.Event()

    async def slow(request: web.Request, n: int) -> web.Response:
        arrived.set()
        await asyncio.sleep(1.5)
        return web.Response(status=204)

    receiver.responder = slow
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    assert settings.redis_url is not None
    proc = worker_process(settings.redis_url, request_timeout=5.0)
    try:
        await asyncio.wait_for(arrived.wait(), 20)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0
    _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
    assert [d["outcome"] for d in body["deliveries"]] == ["delivered"]
    assert len(receiver.received) == 1
    assert await redis.zcard("relay:sched:deliveries") == 0
