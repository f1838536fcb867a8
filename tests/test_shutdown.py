"""Graceful shutdown: SIGTERM lets in-flight work finish; nothing is lost or sent twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from typing import Any

from aiohttp import web
from arq import func

from relay.config.settings import Settings
from relay.store import keys
from tests.helpers import Api, Receiver, ensure_stopped, free_port, loopback_env, running_worker, start_relay
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
        ensure_stopped(proc)
    assert code == 0
    _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
    assert [d["outcome"] for d in body["deliveries"]] == ["delivered"]
    assert len(receiver.received) == 1
    assert await redis.zcard(keys.DELIVERIES) == 0


def api_process(redis_url: str, port: int) -> subprocess.Popen[bytes]:
    env = loopback_env(redis_url, RELAY_PORT=str(port))
    return start_relay("serve", env)


async def test_sigterm_on_the_api_drains_requests_in_flight(settings: Settings, redis: Any) -> None:
    import aiohttp

    port = free_port()
    assert settings.redis_url is not None
    proc = api_process(settings.redis_url, port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(base + "/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            body = {"monitorUrl": "http://127.0.0.1:1029/monitor/x", "callbackUrl": "http://127.0.0.1:1029/hook"}
            async with session.post(base + "/v1/jobs", json=body) as resp:
                job = await resp.json()
            # a long-poll is a request in flight for two seconds; SIGTERM arrives in the middle of it
            waiting = asyncio.create_task(session.get(f"{base}/v1/jobs/{job['id']}?wait=2"))
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            resp = await waiting
            assert resp.status == 200 and (await resp.json())["id"] == job["id"]
            resp.release()
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
    finally:
        ensure_stopped(proc)
    assert code == 0


async def test_a_worker_closed_while_an_arq_job_ends_shuts_down_whole(settings: Settings, redis: Any) -> None:
    """arq's close() cancels the jobs in flight, then gathers them: a job cancelled in arq's own Redis writes (here
    its finish, held by ``CLIENT PAUSE WRITE``) raised CancelledError out of close() before the worker's shutdown
    ran, and its claim loops, clock and waker went on writing into the next test's just-flushed Redis. Here
    close() returns and the shutdown ran: the loops are stopped."""
    ended = asyncio.Event()

    async def pausing_job(ctx: dict[str, Any]) -> None:
        await redis.execute_command("CLIENT", "PAUSE", "1500", "WRITE")  # arq's finish of this job waits
        ended.set()

    async with running_worker(settings, functions=[func(pausing_job, name="pausing_job")]) as worker:
        assert "loops" in worker.ctx, "running_worker yields the worker once its startup ran"
        loops = worker.ctx["loops"]
        await worker.pool.enqueue_job("pausing_job")
        await asyncio.wait_for(ended.wait(), 10)
        await asyncio.sleep(0.1)  # arq is writing the job's end
        assert worker.tasks, "the job's task is still in arq's hands"
    assert all(loop._task is None or loop._task.done() for loop in loops), "the claim loops still run"
    assert worker._pool is None, "close() did not finish"
