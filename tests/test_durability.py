"""RELAY_REDIS_MIN_REPLICAS against a real primary and replica: nothing is acknowledged until the replica has it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError

from relay.config.settings import Settings
from relay.core.schema import Job
from relay.store import keys
from relay.store.connections import redis_client
from relay.store.durable import DurableRedis, NotReplicated
from relay.store.jobs import Store
from tests.helpers import running_api, with_settings
from tests.sentinels import PrimaryReplica

BODY = {"monitorUrl": "http://127.0.0.1:1029/monitor/1", "callbackUrl": "http://127.0.0.1:1029/hook"}


@pytest.fixture
def pair() -> Iterator[PrimaryReplica]:
    servers = PrimaryReplica()
    try:
        servers.start()
        yield servers
    finally:
        servers.cleanup()


@pytest.fixture
async def replica(pair: PrimaryReplica) -> AsyncIterator[Redis]:
    client = Redis.from_url(pair.replica.url, decode_responses=True)
    yield client
    await client.aclose()


def durable(settings: Settings, pair: PrimaryReplica, replicas: int = 1) -> Settings:
    return with_settings(settings, redis_url=pair.primary.url, redis_min_replicas=replicas, redis_wait_timeout=0.2)


async def test_a_job_is_on_the_replica_by_the_time_the_api_answers_201(
    pair: PrimaryReplica, replica: Redis, settings: Settings
) -> None:
    async with running_api(durable(settings, pair)) as api:
        status, job, _ = await api.request("POST", "/v1/jobs", json=BODY)
        assert status == 201
        # read from the replica at once: WAIT returned only after the replica had the write
        assert await replica.hget(keys.job(job["id"]), Job.name_of(lambda j: j.callback_url)) == BODY["callbackUrl"]


async def test_with_the_replica_stalled_the_api_answers_503_and_at_zero_it_does_not_wait(
    pair: PrimaryReplica, replica: Redis, settings: Settings
) -> None:
    async with running_api(durable(settings, pair)) as api, running_api(durable(settings, pair, 0)) as fast:
        with pair.replica_stalled():
            status, problem, resp = await api.request("POST", "/v1/jobs", json=BODY)
            assert status == 503 and resp.content_type == "application/problem+json"
            assert problem["title"] == "Service Unavailable" and "RELAY_REDIS_MIN_REPLICAS" in problem["detail"]
            assert resp.headers["Retry-After"] == "1"
            status, _, _ = await fast.request("POST", "/v1/jobs", json=BODY)
            assert status == 201, "RELAY_REDIS_MIN_REPLICAS=0 never waits for a replica"
        status, job, _ = await api.request("POST", "/v1/jobs", json=BODY)
        assert status == 201 and await replica.exists(keys.job(job["id"]))


async def test_a_claim_a_replica_did_not_confirm_fails_and_its_lease_brings_the_member_back(
    pair: PrimaryReplica,
) -> None:
    client = redis_client(pair.primary.url, min_replicas=1, wait_timeout=0.2)
    assert isinstance(client, DurableRedis)
    store = Store(client, retention=3600, job_timeout=3600)
    member = uuid.uuid4().hex
    try:
        await store.monitors.add(member)
        with pair.replica_stalled(), pytest.raises(NotReplicated):
            await store.monitors.claim(10, lease=0.5)
        # the claim ran on the primary (the member is leased) but was not treated as done: nobody
        # polls it, and once the lease runs out the next claim takes it
        assert await store.monitors.claim(10, lease=0.5) == []
        deadline = time.monotonic() + 10
        while not (claims := await store.monitors.claim(10, lease=0.5)):
            assert time.monotonic() < deadline, "the member never came back"
            await asyncio.sleep(0.05)
        assert [c.member for c in claims] == [member]
    finally:
        await client.aclose()


async def test_a_batched_script_on_a_demoted_primary_fails_as_readonly(pair: PrimaryReplica) -> None:
    """What a Sentinel client needs to drop the connection and ask for the new primary."""
    client = redis_client(pair.primary.url)
    store = Store(client, retention=3600, job_timeout=3600)
    try:
        await store.register(
            uuid.uuid4().hex, Job(callback_url="http://127.0.0.1:1029/hook"), "http://127.0.0.1:1029/m"
        )
        async with Redis.from_url(pair.replica.url) as promoted, Redis.from_url(pair.primary.url) as demoted:
            await promoted.replicaof("NO", "ONE")
            await demoted.replicaof("127.0.0.1", str(pair.replica.port))
        with pytest.raises(ReadOnlyError):
            await store.register(
                uuid.uuid4().hex, Job(callback_url="http://127.0.0.1:1029/hook"), "http://127.0.0.1:1029/n"
            )
    finally:
        await client.aclose()
