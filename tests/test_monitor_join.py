"""A job joining a monitor other jobs share is polled within its first poll interval, whatever the monitor is
doing: being polled (leased), resting after its copy completed, or waiting out a Retry-After (then no sooner
than the Retry-After allows, and no later)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.core.monitor import Kind, PollResult
from relay.core.schema import Job, Monitor
from relay.core.tracking import PollPolicy, plan_poll
from relay.simulator import Simulator
from relay.store.jobs import PollWritten, Store
from tests.helpers import Api, Receiver

#: the poll that did not see the new job said "again in a minute" (a long backoff, or a completed monitor's recheck)
LATER = 60.0


def _fields(sim: Simulator, monitor_url: str, receiver: Receiver, token: str = "sim-token") -> dict[str, Any]:  # noqa: S107  # the simulator's
    return {
        "monitorUrl": monitor_url,
        "callbackUrl": receiver.url,
        "driveItemUrl": f"{sim.base_url}/v1.0/me/drive/items/{{resourceId}}",
        "authorization": f"Bearer {token}",
    }


def _store(redis: Redis, settings: Settings) -> Store:
    return Store(redis, retention=60, job_timeout=60, first_poll=settings.poll_initial_interval)


async def _due_in_ms(store: Store, redis: Redis, job_id: str) -> float:
    job = await store.job(job_id)
    assert job is not None
    due = (await store.poll_info(job)).due
    assert due is not None
    seconds, micros = await redis.time()
    return due - (seconds * 1000 + micros // 1000)


async def test_a_job_joining_a_monitor_being_polled_is_polled_right_after_that_poll(
    api: Api,
    simulator: Simulator,
    receiver: Receiver,
    redis: Redis,
    settings: Settings,
    start_worker: Callable[..., Any],
) -> None:
    store = _store(redis, settings)
    op = simulator.create(duration=60)
    await api.create(**_fields(simulator, op.monitor_url, receiver))
    (claim,) = await store.monitors.claim(1, lease=30)  # a worker is polling the monitor: its answer is on the way
    joined = await api.create(**_fields(simulator, op.monitor_url, receiver))
    assert await _due_in_ms(store, redis, joined["id"]) > 20_000, "the lease is kept: no second poller meanwhile"
    polled = Monitor(polls=1, last_polled=claim.now_ms)
    assert await store.submit_poll(claim, polled, [], LATER, jobs=1) == PollWritten(
        False, []
    )  # that poll read only the first job
    assert await _due_in_ms(store, redis, joined["id"]) <= settings.poll_initial_interval * 1000
    async with start_worker():
        await receiver.wait_for(lambda: bool(receiver.events(joined["id"])), timeout=5)
    assert receiver.events(joined["id"])[0]["type"] == "job.progress"


async def test_a_job_joining_right_after_the_copy_completed_completes_at_once(
    api: Api, simulator: Simulator, receiver: Receiver, redis: Redis, settings: Settings, worker: Any
) -> None:
    op = simulator.create(duration=0.2)
    # the first job's token is refused: it waits for a fresh one, and its completed monitor stays, rechecked
    # once a minute
    first = await api.create(**_fields(simulator, op.monitor_url, receiver, token="expired"))
    await receiver.wait_for(lambda: any(e["type"] == "job.authorizationRequired" for e in receiver.events(first["id"])))
    polls = op.polls
    joined = await api.create(**_fields(simulator, op.monitor_url, receiver))
    await receiver.wait_for(lambda: receiver.terminal(joined["id"]) is not None, timeout=5)
    done = receiver.terminal(joined["id"])
    assert done is not None and done["type"] == "job.completed" and done["data"]["driveItem"]["id"] == op.resource_id
    assert op.polls == polls, "a completed monitor is not asked again"
    assert receiver.terminal(first["id"]) is None, "the first job still waits for its authorization"


async def test_a_job_joining_a_monitor_that_waits_out_a_retry_after_waits_for_it_and_no_longer(
    api: Api,
    simulator: Simulator,
    receiver: Receiver,
    redis: Redis,
    settings: Settings,
    start_worker: Callable[..., Any],
) -> None:
    store = _store(redis, settings)
    op = simulator.create(duration=60)
    first = await api.create(**_fields(simulator, op.monitor_url, receiver))
    (claim,) = await store.monitors.claim(1, lease=30)
    # the monitor answered 429 with Retry-After: 2; the poll is written as the worker writes it
    throttled = PollResult(Kind.RETRY, http_status=429, retry_after="2")
    jobs = [Job.from_hash(first["id"], {"created": str(claim.now_ms)})]
    plan = plan_poll(
        throttled, Monitor.from_hash(claim.member, {}), jobs, claim.now_ms, PollPolicy.of(settings), random.Random(0)
    )
    assert (await store.submit_poll(claim, plan.monitor_change, plan.ops, LATER, jobs=1)).applied == []
    joined = await api.create(**_fields(simulator, op.monitor_url, receiver))
    due = await _due_in_ms(store, redis, joined["id"])
    retry_after_ends = time.monotonic() + due / 1000
    assert 1000 < due <= 2000, "due when the Retry-After ends"
    async with start_worker():
        await asyncio.sleep(max(0.0, retry_after_ends - time.monotonic() - 0.3))
        assert op.polls == 0, "polled before the Retry-After ended"
        await receiver.wait_for(lambda: bool(receiver.events(joined["id"])), timeout=5)
    arrived = receiver.received[0].at
    assert arrived >= retry_after_ends - 0.05
