"""Delivery rules on a small scale: order, supersession, retries, 410, redirects, dead letters, redelivery."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.store import keys
from tests.helpers import Api, Receiver, eventually, with_settings

COMPLETED = {"status": "completed", "percentageComplete": 100.0, "resourceId": "01ABC"}


def steps(*pcts: float) -> list[dict[str, Any]]:
    """A scripted monitor: one progress answer per poll, then completed."""
    script: list[dict[str, Any]] = [
        {"status": 202, "body": {"operation": "ItemCopy", "status": "inProgress", "percentageComplete": p}}
        for p in pcts
    ]
    script.append({"status": 202, "body": COMPLETED})
    return script


async def deliveries(api: Api, job_id: str) -> list[dict[str, Any]]:
    _, body, _ = await api.request("GET", f"/v1/jobs/{job_id}/deliveries")
    result: list[dict[str, Any]] = body["deliveries"]
    return result


async def test_two_workers_deliver_each_job_in_order_one_at_a_time(
    api: Api, simulator: Any, receiver: Receiver, start_worker: Any
) -> None:
    in_flight: dict[str, int] = defaultdict(int)
    overlap: list[str] = []

    async def slow(request: web.Request, _: int) -> web.Response:
        job_id = (await request.json())["data"]["jobId"]
        in_flight[job_id] += 1
        if in_flight[job_id] > 1:
            overlap.append(job_id)
        await asyncio.sleep(0.03)
        in_flight[job_id] -= 1
        return web.Response(status=204)

    receiver.responder = slow
    jobs = []
    for _ in range(6):
        op = simulator.create(script=steps(*range(5, 100, 10)))
        jobs.append(await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url))
    async with start_worker(), start_worker():
        await receiver.wait_for(lambda: all(receiver.terminal(j["id"]) for j in jobs), timeout=30)
    assert overlap == [], f"jobs delivered by two workers at once: {overlap}"
    for job in jobs:
        seqs = [e["data"]["sequence"] for e in receiver.events(job["id"])]
        assert seqs == sorted(set(seqs)), seqs
        assert receiver.events(job["id"])[-1]["type"] == "job.completed"


async def test_undelivered_progress_is_superseded_and_the_terminal_event_kept(
    api: Api, simulator: Any, receiver: Receiver, start_worker: Any, settings: Settings
) -> None:
    # the callback is down while the whole copy runs; when it recovers only the newest event matters
    down = True
    receiver.responder = lambda request, n: web.Response(status=503 if down else 204)
    op = simulator.create(script=steps(10, 20, 30, 40))
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    custom = with_settings(settings, delivery_schedule=(0, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3))
    async with start_worker(custom):
        await eventually(lambda: _has_event(api, job["id"], "job.completed"))
        down = False
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)

        async def acknowledged() -> bool:  # the 2xx is recorded after the receiver has answered
            return any(d["outcome"] == "delivered" for d in await deliveries(api, job["id"]))

        await eventually(acknowledged)
    log = await deliveries(api, job["id"])
    superseded = [d for d in log if d["outcome"] == "superseded"]
    assert superseded and all(d["type"] == "job.progress" for d in superseded)
    delivered = [d for d in log if d["outcome"] == "delivered"]
    assert [d["type"] for d in delivered] == ["job.completed"]
    _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
    states = {e["type"]: e["state"] for e in body["events"]}
    assert states["job.completed"] == "delivered"


async def _has_event(api: Api, job_id: str, kind: str) -> bool:
    _, body, _ = await api.request("GET", f"/v1/jobs/{job_id}/deliveries")
    return any(e["type"] == kind for e in body["events"])


async def test_410_gone_stops_delivery_and_tracking(
    api: Api, simulator: Any, receiver: Receiver, worker: Any, redis: Redis
) -> None:
    receiver.responder = lambda request, n: web.Response(status=410)
    op = simulator.create(duration=30)
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    await receiver.wait_for(lambda: len(receiver.received) >= 1)

    async def cancelled() -> bool:
        _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
        return bool(body["status"] == "cancelled")

    await eventually(cancelled)
    _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
    assert body["error"]["code"] == "callbackGone" and body["error"]["httpStatus"] == 410
    polls = op.polls
    await asyncio.sleep(0.6)
    assert len(receiver.received) == 1
    assert op.polls <= polls + 1  # at most the poll already in flight
    assert await redis.zcard(keys.DELIVERIES) == 0


async def test_retry_after_is_honoured(api: Api, simulator: Any, receiver: Receiver, worker: Any) -> None:
    receiver.responder = lambda request, n: (
        web.Response(status=429, headers={"Retry-After": "1"}) if n == 1 else web.Response(status=204)
    )
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    await receiver.wait_for(lambda: len(receiver.received) >= 2)
    gap = receiver.received[1].at - receiver.received[0].at
    assert gap >= 0.95, gap  # the schedule alone would retry after 0.1 s
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]
    assert [d["status"] for d in await deliveries(api, job["id"])] == [429, 204]


async def test_redirects_are_failures_and_not_followed(
    api: Api, simulator: Any, receiver: Receiver, worker: Any
) -> None:
    followed: list[str] = []
    receiver.responder = lambda request, n: (
        followed.append(request.path) or web.Response(status=204)
        if request.path == "/elsewhere"
        else web.Response(status=302, headers={"Location": "/elsewhere"})
    )
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)

    async def dead() -> bool:
        return any(d["outcome"] == "dead" for d in await deliveries(api, job["id"]))

    await eventually(dead)
    assert followed == []
    assert [d["status"] for d in await deliveries(api, job["id"])] == [302, 302, 302]


async def test_slow_callback_times_out(
    api: Api, simulator: Any, receiver: Receiver, start_worker: Any, settings: Settings
) -> None:
    async def hang(request: web.Request, n: int) -> web.Response:
        if n == 1:
            await asyncio.sleep(2)
        return web.Response(status=204)

    receiver.responder = hang
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    async with start_worker(with_settings(settings, request_timeout=0.5)):
        await receiver.wait_for(lambda: len(receiver.received) >= 2)
        await eventually(lambda: _delivered(api, job["id"]))
    log = await deliveries(api, job["id"])
    port = receiver.url.split(":")[2].split("/")[0]
    assert log[0]["status"] is None
    assert log[0]["error"] == f"timeout: no answer from 127.0.0.1:{port} within 0.5 s (RELAY_REQUEST_TIMEOUT)"
    assert 400 <= log[0]["durationMs"] < 1500


async def _delivered(api: Api, job_id: str) -> bool:
    return any(d["outcome"] == "delivered" for d in await deliveries(api, job_id))


async def test_dead_letter_then_redeliver_with_the_same_webhook_id(
    api: Api, simulator: Any, receiver: Receiver, worker: Any, redis: Redis
) -> None:
    receiver.responder = lambda request, n: web.Response(status=500 if n <= 3 else 204)
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)

    async def dead() -> bool:
        return any(d["outcome"] == "dead" for d in await deliveries(api, job["id"]))

    await eventually(dead)
    assert await redis.zcard(keys.DEAD_LETTERS) == 1
    _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
    assert [e["state"] for e in body["events"]] == ["dead"]
    assert len(receiver.received) == 3  # the schedule has three entries

    status, redo, _ = await api.request("POST", f"/v1/jobs/{job['id']}/redeliver")
    assert status == 202 and redo["type"] == "job.completed"
    await receiver.wait_for(lambda: len(receiver.received) == 4)
    assert {r.headers["webhook-id"] for r in receiver.received} == {redo["eventId"]}
    await eventually(lambda: _delivered(api, job["id"]))
    assert await redis.zcard(keys.DEAD_LETTERS) == 0


async def test_redeliver_before_the_end_is_a_conflict(api: Api) -> None:
    job = await api.create(monitorUrl="http://127.0.0.1:1029/monitor/x", callbackUrl="http://127.0.0.1:1029/hook")
    status, problem, _ = await api.request("POST", f"/v1/jobs/{job['id']}/redeliver")
    assert status == 409 and problem["title"] == "No terminal event"


async def test_timestamp_is_fresh_per_attempt(
    api: Api, simulator: Any, receiver: Receiver, start_worker: Any, settings: Settings
) -> None:
    receiver.responder = lambda request, n: web.Response(status=500 if n == 1 else 204)
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    async with start_worker(with_settings(settings, delivery_schedule=(0, 1.2))):
        await receiver.wait_for(lambda: len(receiver.received) >= 2)
    first, second = (int(r.headers["webhook-timestamp"]) for r in receiver.received[:2])
    assert second > first
    assert time.time() - second < 5
