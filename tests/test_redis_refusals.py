"""Redis refusing commands (issue 32): a full Redis, a read-only replica, a primary down, a busy script.

The API answers 503 problem+json with Retry-After, /readyz says not ready, the refusals are counted by kind and
logged once per spell (not per request), workers back off without a traceback, and a job acknowledged before
the spell completes after it. Real Redis servers, each made to refuse the way it would in production.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

from relay import logs
from relay.api.middlewares import REFUSED_RETRY_AFTER
from relay.config.settings import Settings
from relay.core.tracking import RESOLVE_RECHECK
from relay.simulator import Simulator
from relay.store.batched import BatchedScript
from relay.store.embedded import EmbeddedRedis
from relay.store.refusals import SPELLS, Spells, refusal_kind, script_error
from tests.faults import fill_redis, free_redis
from tests.helpers import Api, Receiver, running_api, running_worker, with_settings
from tests.test_batched import _INCR, _SHARED, _value, incr
from tests.test_end_to_end import job_fields
from workers.backstop import counts

REFUSING = "redis refuses commands; answering 503 and backing off until it accepts them again"


def refusals(kind: str) -> float:
    return REGISTRY.get_sample_value("relay_redis_refusals_total", {"kind": kind}) or 0.0


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The process's log lines (JSON) from here on; a spell left by an earlier test is closed first."""
    SPELLS.accepted()
    stream = io.StringIO()
    logs.configure("json", logging.INFO, stream)
    try:
        yield stream
    finally:
        logs.configure("json", logging.WARNING)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.fixture
def spare_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, to make read-only or fill up (the session's is shared)."""
    server = EmbeddedRedis()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
async def spare(spare_redis: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(spare_redis.url, decode_responses=True)
    yield client
    await client.aclose()


async def fill(redis: Redis) -> int:
    blocks = await fill_redis(redis)
    with pytest.raises(OutOfMemoryError):  # full: even a small write is refused
        await redis.set("filler:probe", "x")
    return blocks


async def free(redis: Redis, filled: int) -> None:
    await free_redis(redis, filled)


async def test_refusals_keep_their_kind_through_a_batched_script(spare: Redis) -> None:
    """A refusal inside a script (a batched call under pcall) is raised with its class and kind, like a command's."""
    script = BatchedScript(spare, _INCR, shared=_SHARED, answer=_value)
    assert await script(incr("warm", 1)) == 1
    await spare.config_set("maxmemory", "1")
    try:
        with pytest.raises(OutOfMemoryError) as oom:
            await spare.set("k2", "v")
        assert refusal_kind(oom.value) == "oom"
        with pytest.raises(OutOfMemoryError) as in_script:
            await script(incr("k3", 1))
    finally:
        await spare.config_set("maxmemory", "0")
    assert refusal_kind(in_script.value) == "oom"
    assert str(in_script.value).startswith("relay script failed: OOM command not allowed")
    assert refusal_kind(script_error("BUSY Redis is busy running a script")) == "busy"
    assert refusal_kind(script_error("ERR user_script:3: attempt to index a nil value")) is None
    assert refusal_kind(ResponseError("MASTERDOWN Link with MASTER is down")) == "masterdown"
    assert refusal_kind(ValueError("OOM")) is None


def test_a_spell_logs_once_and_its_end_once(captured: io.StringIO) -> None:
    spells = Spells(quiet=60)
    for _ in range(500):
        spells.refused(ReadOnlyError("You can't write against a read only replica."), "api")
    assert spells.refusing() == "readonly"
    spells.accepted()
    spells.accepted()
    assert spells.refusing() is None
    found = lines(captured)
    assert [line["event"] for line in found] == [REFUSING, "redis accepts commands again"]
    assert found[0]["kind"] == "readonly" and found[1]["refusals"] == 500


async def test_a_full_redis_is_a_503_with_retry_after_then_nothing_is_lost(
    settings: Settings, redis: Redis, simulator: Simulator, receiver: Receiver, captured: io.StringIO
) -> None:
    before = refusals("oom")
    # arq's health key written every 0.2 s: a write the full Redis refuses too (it used to end the worker)
    async with running_api(settings) as api, running_worker(settings, health_check_interval=0.2):
        op = simulator.create(duration=1.0)
        acknowledged = await api.create(**job_fields(simulator, op.monitor_url, receiver))
        filled = await fill(redis)
        try:
            refused = [await _post(api, simulator, receiver) for _ in range(30)]
            ready, body, _ = await api.request("GET", "/readyz")
            await asyncio.sleep(1.5)  # the worker's claims meet the full Redis too, and its poll writes
        finally:
            await free(redis, filled)
        for status, problem, retry_after, content_type in refused:
            assert (status, retry_after, content_type) == (503, str(REFUSED_RETRY_AFTER), "application/problem+json")
            assert "Redis refuses commands (oom)" in problem["detail"]
        assert ready == 503 and "refuses writes (oom)" in body["detail"]
        assert refusals("oom") - before >= 31
        ready_again, _, _ = await api.request("GET", "/readyz")
        assert ready_again == 200
        after = await api.create(**job_fields(simulator, simulator.create(duration=0.2).monitor_url, receiver))
        for job in (acknowledged, after):
            await receiver.wait_for(lambda job=job: receiver.terminal(job["id"]) is not None, timeout=30)
    found = lines(captured)
    events = [line["event"] for line in found]
    assert events.count(REFUSING) == 1, [line for line in found if line.get("level") in ("warning", "error")]
    assert "redis accepts commands again" in events
    assert not [line for line in found if "exception" in line or line["event"] in ("unhandled error", "claim failed")]
    assert len(await redis.keys("relay:job:*:events")) >= 2  # the 503s recorded nothing, the 201s everything


async def _post(api: Api, sim: Simulator, receiver: Receiver) -> tuple[int, Any, str | None, str]:
    status, body, resp = await api.request("POST", "/v1/jobs", json=job_fields(sim, sim.create().monitor_url, receiver))
    return status, body, resp.headers.get("Retry-After"), resp.content_type


@pytest.mark.parametrize("kind", ["readonly", "masterdown", "busy"])
async def test_every_refusal_is_a_503_and_not_ready(
    kind: str, settings: Settings, spare_redis: EmbeddedRedis, spare: Redis, simulator: Simulator, receiver: Receiver
) -> None:
    """A read-only replica, a replica whose primary is down (``replica-serve-stale-data no``), a script past
    ``busy-reply-threshold``: each refuses registrations, and the API says so with a 503 and /readyz."""
    own = with_settings(settings, redis_url=spare_redis.url)
    before, before_all = refusals(kind), refusals("readonly")
    busy: asyncio.Task[Any] | None = None
    async with running_api(own) as api:
        if kind == "busy":
            await spare.config_set("busy-reply-threshold", "50")
            looping = Redis.from_url(spare_redis.url)
            script = (  # a second of Lua, as a runaway script would: Redis answers BUSY to all else meanwhile
                "local function ms() local t = redis.call('TIME') "
                "return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 end "
                "local e = ms() + 1000 while ms() < e do end return 1"
            )
            busy = asyncio.create_task(looping.eval(script, 0))
            await asyncio.sleep(0.3)
        else:
            await spare.config_set("replica-serve-stale-data", "no" if kind == "masterdown" else "yes")
            await spare.replicaof("127.0.0.1", "1")  # a primary that is not there: a replica, cut off
        try:
            status, problem, retry_after, _ = await _post(api, simulator, receiver)
            ready, body, _ = await api.request("GET", "/readyz")
        finally:
            if busy is not None:
                await busy
                await looping.aclose()
            else:
                await spare.replicaof("NO", "ONE")
    assert (status, retry_after) == (503, str(REFUSED_RETRY_AFTER)), problem
    assert f"({kind})" in problem["detail"]
    # a replica cut off refuses the probe's write as read-only before it says its primary is down
    assert ready == 503 and f"({'readonly' if kind == 'masterdown' else kind})" in body["detail"]
    assert refusals(kind) - before >= 1 and refusals(kind) - before + refusals("readonly") - before_all >= 2


async def test_a_resolution_refused_by_a_full_redis_is_written_when_it_accepts_again(
    settings: Settings, redis: Redis, simulator: Simulator, receiver: Receiver
) -> None:
    """The DriveItem is in hand when Redis is full: its write is tried again after a pause, not left to the
    completed monitor's recheck a minute later (nor fetched again)."""
    asked, release = asyncio.Event(), asyncio.Event()
    fetched: list[str] = []

    async def item(request: web.Request) -> web.Response:
        fetched.append(request.match_info["item_id"])
        asked.set()
        await release.wait()
        return web.json_response({"id": request.match_info["item_id"], "name": "LargeFolder1"})

    app = web.Application()
    app.router.add_get("/v1.0/me/drive/items/{item_id}", item)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    items = f"http://127.0.0.1:{runner.addresses[0][1]}/v1.0/me/drive/items/{{resourceId}}"
    filled = 0
    try:
        async with running_api(settings) as api, running_worker(settings):
            op = simulator.create(duration=0.3)
            job = await api.create(**job_fields(simulator, op.monitor_url, receiver, driveItemUrl=items))
            await asyncio.wait_for(asked.wait(), 15)  # the job is resolving; its DriveItem request waits
            filled = await fill(redis)
            release.set()  # the answer comes while Redis is full: the write of job.completed is refused
            await asyncio.sleep(1.5)
            assert receiver.terminal(job["id"]) is None
            await free(redis, filled)
            filled = 0
            await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=RESOLVE_RECHECK / 3)
    finally:
        release.set()
        if filled:
            await free(redis, filled)
        await runner.cleanup()
    done = receiver.terminal(job["id"])
    assert done is not None and done["type"] == "job.completed" and done["data"]["driveItem"]["id"] == op.resource_id
    assert fetched == [op.resource_id], "the DriveItem was fetched again"


def test_a_refusal_is_never_a_strike_against_a_member() -> None:
    """A full or read-only Redis is nobody's fault: the backstop (workers/backstop.py) must not park the monitors,
    deliveries and resolutions it refuses. redis-py drops the code from a command's message (``OOM command...``
    becomes ``command not allowed...``), which a check of the message's words missed."""
    assert not counts(OutOfMemoryError("command not allowed when used memory > 'maxmemory'."))
    assert not counts(ReadOnlyError("You can't write against a read only replica."))
    assert not counts(script_error("MISCONF Redis is configured to save RDB snapshots, but it's not able to persist"))
    assert counts(ResponseError("user_script:12: Script attempted to access nonexistent global variable 'x'"))
