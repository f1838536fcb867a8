"""Long copies outlive their token: relay asks for a fresh authorization, waits for it, and still delivers the item."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.core.authorization import MAX_ASKS, bearer_expired
from relay.simulator import Simulator
from tests.helpers import Api, Receiver, ensure_stopped, with_settings
from tests.test_crash import worker_process

ASK = "job.authorizationRequired"


def types(receiver: Receiver, job_id: str) -> list[str]:
    return [e["type"] for e in receiver.events(job_id)]


def asks(receiver: Receiver, job_id: str) -> list[dict[str, Any]]:
    return [e for e in receiver.events(job_id) if e["type"] == ASK]


async def register(api: Api, sim: Simulator, receiver: Receiver, token: str, duration: float = 0.3) -> dict[str, Any]:
    op = sim.create(duration=duration)
    return await api.create(
        monitorUrl=op.monitor_url,
        callbackUrl=receiver.url,
        driveItemUrl=f"{sim.base_url}/v1.0/me/drive/items/{{resourceId}}",
        authorization=f"Bearer {token}",
        metadata={"copy": "big"},
    ) | {"resource_id": op.resource_id}


async def patch_token(api: Api, job_id: str, token: str) -> dict[str, Any]:
    status, body, _ = await api.request("PATCH", f"/v1/jobs/{job_id}", json={"authorization": f"Bearer {token}"})
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def test_only_a_bearer_jwt_past_its_exp_counts_as_expired() -> None:
    sim = Simulator()
    live, _ = sim.tokens.issue(ttl=3600)
    dead, _ = sim.tokens.issue(ttl=0)
    now = time.time() + 2
    assert bearer_expired(f"Bearer {dead}", now) and not bearer_expired(f"Bearer {live}", now)
    for opaque in (None, "", "Bearer sim-token", "Basic a.b.c", "Bearer a.!!!.c", "Bearer a.bnVsbA.c"):
        assert not bearer_expired(opaque, now), opaque


async def test_a_copy_that_outlives_its_token_ends_with_the_drive_item_after_a_patch(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    first, _ = simulator.tokens.issue(ttl=3600)
    job = await register(api, simulator, receiver, first)
    simulator.tokens.expire_all()  # Graph stops taking the token while the copy runs
    await receiver.wait_for(lambda: len(asks(receiver, job["id"])) == 1)
    ask = asks(receiver, job["id"])[0]["data"]
    assert ask["httpStatus"] == 401 and ask["reason"] == "unauthorized" and ask["resourceId"] == job["resource_id"]
    assert (ask["ask"], ask["maxAsks"], ask["metadata"]) == (1, MAX_ASKS, {"copy": "big"})
    assert datetime.fromisoformat(ask["waitUntil"]).timestamp() > time.time() + 3000  # RELAY_AUTHORIZATION_WAIT
    status, view, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
    assert (
        status == 200
        and view["phase"] == "awaitingAuthorization"
        and view["authorizationWaitUntil"] == ask["waitUntil"]
    )

    fresh, _ = simulator.tokens.issue(ttl=3600)
    patched = await patch_token(api, job["id"], fresh)
    assert patched["phase"] == "resolving" and patched["authorizationWaitUntil"] is None
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    done = receiver.events(job["id"])[-1]
    assert done["type"] == "job.completed" and done["data"]["driveItem"]["id"] == job["resource_id"]
    assert "resolutionError" not in done["data"]
    assert simulator.item_auth_headers == [f"Bearer {first}", f"Bearer {fresh}"]
    assert types(receiver, job["id"]).count("job.completed") == 1 and receiver.bad_signatures == 0


async def test_a_token_past_its_exp_is_not_sent_and_asks_at_once(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    short, expires = simulator.tokens.issue(ttl=0.2)
    assert expires is not None
    job = await register(api, simulator, receiver, short, duration=max(0.3, expires - time.time() + 1.2))
    await receiver.wait_for(lambda: len(asks(receiver, job["id"])) == 1)
    ask = asks(receiver, job["id"])[0]["data"]
    assert ask["reason"] == "tokenExpired" and ask["httpStatus"] is None
    assert simulator.item_auth_headers == [], "an expired token was sent"
    fresh, _ = simulator.tokens.issue(ttl=3600)
    await patch_token(api, job["id"], fresh)
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    assert receiver.terminal(job["id"])["data"]["driveItem"]["id"] == job["resource_id"]  # type: ignore[index]
    assert simulator.item_auth_headers == [f"Bearer {fresh}"]


async def test_no_patch_ends_the_job_with_the_401_when_the_wait_runs_out(
    api: Api, simulator: Simulator, receiver: Receiver, settings: Settings, start_worker: Callable[..., Any]
) -> None:
    job = await register(api, simulator, receiver, "never-issued")
    async with start_worker(with_settings(settings, authorization_wait=0.5)):
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    assert types(receiver, job["id"])[-2:] == [ASK, "job.completed"]
    done = receiver.events(job["id"])[-1]["data"]
    assert done["driveItem"] is None and done["resourceId"] == job["resource_id"]
    assert done["resolutionError"]["code"] == "httpError" and done["resolutionError"]["httpStatus"] == 401
    assert "no usable authorization came in time" in done["resolutionError"]["message"]
    status, view, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
    assert status == 200 and view["status"] == "completed" and view["phase"] == "ended"


async def test_three_refused_patches_end_the_job_with_the_401(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    job = await register(api, simulator, receiver, "never-issued")
    for n in range(1, MAX_ASKS + 1):
        await receiver.wait_for(lambda n=n: len(asks(receiver, job["id"])) == n)  # type: ignore[misc]
        await patch_token(api, job["id"], f"still-wrong-{n}")
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    assert [a["data"]["ask"] for a in asks(receiver, job["id"])] == [1, 2, 3]
    done = receiver.events(job["id"])[-1]["data"]
    assert done["driveItem"] is None and done["resolutionError"]["httpStatus"] == 401
    assert len(simulator.item_auth_headers) == MAX_ASKS + 1


async def test_a_worker_killed_during_the_wait_loses_nothing(
    api: Api, simulator: Simulator, receiver: Receiver, settings: Settings, redis: Redis
) -> None:
    job = await register(api, simulator, receiver, "never-issued")
    assert settings.redis_url is not None
    proc = worker_process(settings.redis_url)
    try:
        await receiver.wait_for(lambda: len(asks(receiver, job["id"])) == 1, timeout=20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        ensure_stopped(proc)
    fresh, _ = simulator.tokens.issue(ttl=3600)
    await patch_token(api, job["id"], fresh)  # handled while no worker runs at all
    await asyncio.sleep(0.2)
    assert receiver.terminal(job["id"]) is None
    proc = worker_process(settings.redis_url)
    try:
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=20)
    finally:
        ensure_stopped(proc)
    done = receiver.events(job["id"])[-1]
    assert done["type"] == "job.completed" and done["data"]["driveItem"]["id"] == job["resource_id"]
