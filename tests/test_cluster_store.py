"""The store on a Redis Cluster (3 primaries on loopback, tests/cluster.py) answers as on one Redis: the same
registrations, polls, deliveries and dead letters give the same listings (pages, cursors, limits), dead letters,
event pages and counters; every key relay writes is in its bucket's slot; a claim round across 128 buckets is one
round trip per node (docs/cluster-design.md)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from relay.config.settings import Settings
from relay.core.ops import JobOp
from relay.core.schema import DeliveryOutcome, Job, Monitor
from relay.simulator import Simulator
from relay.store import keys
from relay.store.embedded import EmbeddedRedis
from relay.store.jobs import Store, monitor_key
from relay.store.scheduler import ROUNDS, Claim
from relay.store.tags import TAGS, slot_of_bucket
from tests.cluster import LoopbackCluster
from tests.helpers import Receiver, eventually, read_sse, running_api, running_worker
from tests.test_delivery import COMPLETED
from tests.test_end_to_end import assert_well_formed, job_fields

OWNERS = {"alpha": 7, "beta": 3}  # jobs each registers
DEAD = 3  # alpha's first jobs whose event dies


@pytest.fixture
async def cluster_client(redis_cluster: LoopbackCluster) -> AsyncIterator[RedisCluster]:
    client = redis_cluster.client()
    await client.flushall()  # every primary
    yield client
    await client.aclose()


def _store(redis: Any) -> Store:
    return Store(redis, retention=600, job_timeout=600, first_poll=0.05)


async def _claim_all(claim: Any, wanted: int) -> list[Claim]:
    found: list[Claim] = []
    for _ in range(50):
        found.extend((await claim(100, 30)).claims)
        if len(found) >= wanted:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"claimed {len(found)} of {wanted}")


async def scenario(store: Store) -> dict[str, Any]:
    """Register, poll (each job records one event), deliver (some die), and read everything back; what it read
    with job ids replaced by the callback URL each job was given (a cluster's ids carry their bucket)."""
    ids: dict[str, str] = {}  # job id -> its name
    for owner, count in OWNERS.items():
        for n in range(count):
            name = f"{owner}-{n}"
            fields = Job(owner=owner, callback_url=f"http://127.0.0.1:1029/{name}")
            made = await store.register(secrets.token_hex(16), fields, f"http://127.0.0.1:1029/m/{name}")
            assert made.created
            ids[made.job_id] = name
    total = sum(OWNERS.values())
    claims = await _claim_all(store.monitors.claim_batch, total)
    writes = []
    for claim in claims:
        _, jobs = store.monitor_state(claim)
        assert jobs is not None and len(jobs) == 1
        (job,) = jobs
        event = {"id": f"msg_{ids[job.id]}", "type": "job.progress", "body": f'{{"n":"{ids[job.id]}"}}'}
        writes.append(store.submit_poll(claim, Monitor(), [JobOp(job=job.id, prev_seq=0, events=[event])], 60.0))
    assert [w.applied for w in await asyncio.gather(*writes)] == [["ok"]] * total
    deliveries = await _claim_all(store.deliveries.claim_batch, total)
    acks, dying = [], []
    for claim in deliveries:
        name = ids[claim.member]
        job, events = store.outbox_state(claim)
        assert job is not None and [e.id for e in events] == [f"msg_{name}"]
        if name.startswith("alpha") and int(name.split("-")[1]) < DEAD:
            dying.append((name, claim))
        else:
            acks.append(store.submit_ack(claim, event_id=f"msg_{name}", outcome=DeliveryOutcome.DELIVERED))
    assert all(await asyncio.gather(*acks))
    for name, claim in sorted(dying, key=lambda named: named[0]):  # each dies a few ms after the one before
        assert await store.submit_ack(claim, event_id=f"msg_{name}", outcome=DeliveryOutcome.DEAD)
        await asyncio.sleep(0.005)

    def named(jobs: list[Job]) -> list[str]:
        return [ids[j.id] for j in jobs]

    out: dict[str, Any] = {}
    for owner in OWNERS:
        pages, end = [], "+"
        while True:  # pages of 3, newest first, cursor to cursor
            found, cursor = await store.owned_jobs(owner, 3, end)
            pages.append(named(found))
            if cursor is None:
                break
            end = f"({cursor}"
        out[f"{owner} pages"] = pages
        found, cursor = await store.owned_jobs(owner, 2, "+", lambda j: j.callback_url.endswith(("0", "2", "4")))
        out[f"{owner} filtered"] = (named(found), cursor is None)
        out[f"{owner} dead 2"] = [(r.event_id, ids[r.job_id]) for r in await store.dead_letters(owner, 2)]
        out[f"{owner} dead 10"] = [(r.event_id, ids[r.job_id]) for r in await store.dead_letters(owner, 10)]
    some = next(job_id for job_id, name in ids.items() if name == "beta-1")
    page = await store.events_after(some, 0)
    out["events"] = (page.events[0][:3], page.read, page.ended)
    out["event"] = (await store.event(f"msg_{ids[some]}")).type  # type: ignore[union-attr]
    job = await store.job(some)
    assert job is not None
    _, delivery = await store.job_info(job)
    assert delivery is not None
    out["delivery"] = (delivery.event_id, delivery.state, delivery.attempts, delivery.waiting)
    stats = await store.stats()
    out["stats"] = {k: stats.get(k) for k in ("registered", "dead", "monitors", "deliveries")}
    out["jobs"] = sorted(named(await store.jobs(list(ids))))
    return out


async def test_the_same_work_reads_the_same_on_one_redis_and_on_a_cluster(
    redis: Redis, cluster_client: RedisCluster
) -> None:
    single = await scenario(_store(redis))
    clustered = await scenario(_store(cluster_client))
    assert clustered == single
    assert single["alpha pages"] == [["alpha-6", "alpha-5", "alpha-4"], ["alpha-3", "alpha-2", "alpha-1"], ["alpha-0"]]
    assert single["alpha dead 10"] == [(f"msg_alpha-{n}", f"alpha-{n}") for n in (2, 1, 0)]
    assert single["stats"] == {"registered": 10, "dead": 3, "monitors": 10, "deliveries": 0}


async def test_every_key_is_in_its_buckets_slot_and_the_jobs_spread_over_the_nodes(
    cluster_client: RedisCluster, redis_cluster: LoopbackCluster
) -> None:
    store = _store(cluster_client)
    ks = store.keyspace
    assert ks.buckets == 128
    await scenario(store)
    slots = {slot_of_bucket(b) for b in range(ks.buckets)}
    found = 0
    nodes_with_jobs = 0
    for node in redis_cluster.primary_nodes():
        admin = redis_cluster.admin(node)
        names = [str(k) for k in admin.keys("*")]
        admin.close()
        found += len(names)
        nodes_with_jobs += any(":job:" in name for name in names)
        for name in names:
            tag = name.split("{", 1)[1].split("}", 1)[0]
            assert name.startswith(f"relay:{{{tag}}}:") and tag in TAGS, name
            assert key_slot(name.encode()) in slots, name
    assert found > 50 and nodes_with_jobs == 3
    for job_id in (await store.owned_jobs("alpha", 10, "+"))[0]:
        bucket = ks.bucket_of_job(job_id.id)
        assert bucket == ks.bucket_of(job_id.monitor_key)
        assert await cluster_client.exists(ks.job(job_id.id), ks.job_events(job_id.id), ks.anchor(bucket)) == 3


async def test_a_claim_round_is_one_round_trip_per_node_however_many_buckets_are_due(
    cluster_client: RedisCluster,
) -> None:
    store = _store(cluster_client)
    monitors = store.monitors
    idle = await monitors.claim_batch(100, 30)  # the first claim sweeps every bucket first
    assert idle.claims == [] and monitors.round_trips == 1, "idle: one sweep, no claim script"
    for n in range(60):
        fields = Job(owner="alpha", callback_url="http://127.0.0.1:1029/h")
        await store.register(secrets.token_hex(16), fields, f"http://127.0.0.1:1029/m/{n}")
    monitors.woken()  # as the wake-ups of the registrations do
    before = monitors.round_trips
    claimed = await monitors.claim_batch(100, 30)
    buckets = {c.bucket for c in claimed.claims}
    assert len(claimed.claims) == 60 and len(buckets) > 30
    # a sweep, then rounds of claim scripts (each one pipeline: one send per node) until every due bucket was
    # asked: however many buckets are due, never one round trip per bucket
    rounds = monitors.round_trips - before
    assert 2 <= rounds <= 1 + ROUNDS
    again = await monitors.claim_batch(100, 30)
    assert again.claims == [] and monitors.round_trips - before == rounds, "nothing due in the view: no round trip"
    assert again.next_due_in is not None and 0 < again.next_due_in <= 30


async def test_registration_on_a_cluster_keeps_idempotency_and_limits_in_the_owners_bucket(
    cluster_client: RedisCluster,
) -> None:
    store = _store(cluster_client)
    ks = store.keyspace
    fields = Job(owner="alpha", callback_url="http://127.0.0.1:1029/h")
    first = await store.register(
        secrets.token_hex(16), fields, "http://127.0.0.1:1029/m/1", idempotency=("alpha", "key1", "body1")
    )
    assert first.created
    again = await store.register(
        secrets.token_hex(16), fields, "http://127.0.0.1:1029/m/2", idempotency=("alpha", "key1", "body1")
    )
    assert not again.created and again.job_id == first.job_id and not again.pending
    held = await cluster_client.get(ks.idempotency("alpha", "key1"))
    assert held == f"{first.job_id} body1"
    assert key_slot(ks.idempotency("alpha", "key1").encode()) == key_slot(ks.owner_jobs("alpha").encode())
    # limits: the owner's active jobs summed over every bucket (approximate: read at most once a second)
    limited = [
        await store.register(secrets.token_hex(16), fields, f"http://127.0.0.1:1029/m/x{n}", limits=(3, 0))
        for n in range(4)
    ]
    assert [r.limited for r in limited][:2] == ["", ""] and limited[3].limited == "active"
    rate = [  # five within a second or two: at least three of them in one second
        await store.register(secrets.token_hex(16), fields, f"http://127.0.0.1:1029/m/r{n}", limits=(0, 2))
        for n in range(5)
    ]
    assert [r.limited for r in rate].count("rate") >= 1
    assert await store.take_quota("beta", (0, 0)) == ""
    # an action's reservation (taken under the id chosen before Graph answered) still admits its registration
    reserved = secrets.token_hex(16)
    assert await store.reserve(("alpha", "key2", "body2"), reserved, 60) is None
    made = await store.register(
        reserved, fields, "http://127.0.0.1:1029/m/action", idempotency=("alpha", "key2", "body2")
    )
    assert made.created and made.job_id[2:] == reserved[2:]
    assert keys.PREFIX in ks.owner_jobs("alpha")


async def test_a_copy_is_registered_polled_delivered_and_listed_through_the_api_and_a_worker_on_a_cluster(
    settings: Settings,
    redis_server: EmbeddedRedis,
    redis_cluster_url: str,
    cluster_client: RedisCluster,
    simulator: Simulator,
    receiver: Receiver,
) -> None:
    """The real API and worker with REDIS_URL=redis+cluster://...; arq's queue on a Redis beside the cluster
    (RELAY_ARQ_REDIS_URL)."""
    on_cluster = settings.replace(redis_url=redis_cluster_url, arq_redis_url=redis_server.url)
    async with running_api(on_cluster) as api, running_worker(on_cluster):
        ops = [simulator.create(duration=0.4, completion="303") for _ in range(4)]
        jobs = [await api.create(**job_fields(simulator, op.monitor_url, receiver)) for op in ops]
        for job in jobs:
            await receiver.wait_for(lambda job=job: receiver.terminal(job["id"]) is not None)
            assert_well_formed(receiver.events(job["id"]), job["id"])
        assert receiver.bad_signatures == 0
        ks = Store(cluster_client, retention=1, job_timeout=1).keyspace
        assert len({ks.bucket_of_job(job["id"]) for job in jobs}) > 1, "the jobs are spread over buckets"
        status, listed, _ = await api.request("GET", "/v1/jobs?limit=3")
        assert status == 200, listed
        assert [j["id"] for j in listed["jobs"]] == [j["id"] for j in reversed(jobs)][:3]
        status, rest, _ = await api.request("GET", f"/v1/jobs?limit=3&cursor={listed['nextCursor']}")
        assert status == 200 and [j["id"] for j in rest["jobs"]] == [jobs[0]["id"]] and rest["nextCursor"] is None
        status, one, _ = await api.request("GET", f"/v1/jobs/{jobs[0]['id']}")
        assert status == 200 and one["status"] == "completed"


async def test_dead_letters_redelivery_and_a_jobs_event_stream_on_a_cluster(
    settings: Settings,
    redis_server: EmbeddedRedis,
    redis_cluster_url: str,
    cluster_client: RedisCluster,
    simulator: Simulator,
    receiver: Receiver,
) -> None:
    on_cluster = settings.replace(redis_url=redis_cluster_url, arq_redis_url=redis_server.url)
    receiver.responder = lambda request, n: web.Response(status=500 if n <= 3 else 204)
    async with running_api(on_cluster) as api, running_worker(on_cluster):
        op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
        job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)

        async def dead() -> bool:
            _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
            return [e["state"] for e in body["events"]] == ["dead"]

        await eventually(dead)
        status, letters, _ = await api.request("GET", "/v1/dead-letters")
        assert status == 200 and [d["jobId"] for d in letters["deadLetters"]] == [job["id"]]
        status, redo, _ = await api.request("POST", f"/v1/jobs/{job['id']}/redeliver")
        assert status == 202 and redo["type"] == "job.completed"
        await receiver.wait_for(lambda: len(receiver.received) == 4)
        assert {r.headers["webhook-id"] for r in receiver.received} == {redo["eventId"]}
        async with api.session.get(f"{api.base}/v1/jobs/{job['id']}/events") as resp:
            messages = await asyncio.wait_for(read_sse(resp), 10)  # the terminal event ends it
        assert [m["id"] for m in messages] == [redo["eventId"]]
        status, letters, _ = await api.request("GET", "/v1/dead-letters")
        assert status == 200 and letters["deadLetters"] == []


async def test_a_crowded_monitor_is_polled_a_chunk_at_a_time_in_its_bucket(cluster_client: RedisCluster) -> None:
    store = Store(cluster_client, retention=600, job_timeout=600, chunk=10)
    url = "http://127.0.0.1:1029/m/crowded"
    fields = Job(owner="alpha", callback_url="http://127.0.0.1:1029/h")
    made = await asyncio.gather(*(store.register(secrets.token_hex(16), fields, url) for _ in range(60)))
    ids = {r.job_id for r in made}
    bucket = store.keyspace.bucket_of(monitor_key(url))
    assert {store.keyspace.bucket_of_job(job_id) for job_id in ids} == {bucket}
    (claim,) = (await store.monitors.claim_batch(10, 30)).claims
    assert claim.bucket == bucket and store.monitor_state(claim)[1] is None, "crowded: its jobs come in chunks"
    seen: list[str] = []
    ops: list[JobOp] = []
    cursor = "0"
    while True:
        read = await store.poll_chunk(claim, Monitor(), ops, cursor, 30_000)
        assert read is not None and read.applied == ["ok"] * len(ops)
        fresh = [job for job in read.jobs if job.id not in seen]
        seen += [job.id for job in fresh]
        ops = [JobOp(job=job.id, prev_seq=0, set=Job(percentage=10.0)) for job in fresh]
        cursor = read.cursor
        if cursor == "0":
            break
    read = await store.poll_chunk_last(claim, ops, 5.0, len(seen), 30_000)
    assert read is not None and read.applied == ["ok"] * len(ops)
    assert set(seen) == ids
    assert {job.percentage for job in await store.jobs(sorted(ids))} == {10.0}


async def test_a_job_born_finished_lives_in_the_bucket_its_random_id_carries(cluster_client: RedisCluster) -> None:
    """An action Graph finished at once: no monitor, so the id chosen before Graph answered keeps its bucket."""
    store = _store(cluster_client)
    job_id = secrets.token_hex(16)
    fields = Job(owner="alpha", callback_url="http://127.0.0.1:1029/h")
    done = {"id": f"msg_{job_id}", "type": "job.completed", "body": "{}"}
    made = await store.register(
        job_id, fields, None, first_op=JobOp(job=job_id, prev_seq=0, events=[done], terminal=True)
    )
    assert made.created and made.job_id == job_id and made.job is not None and made.job.terminal
    (claim,) = (await store.deliveries.claim_batch(10, 30)).claims
    assert claim.member == job_id and claim.bucket == store.keyspace.bucket_of_job(job_id)
    assert [e.id for e in store.outbox_state(claim)[1]] == [done["id"]]
    assert [j.id for j in (await store.owned_jobs("alpha", 5, "+"))[0]] == [job_id]


async def test_a_jobs_created_time_is_its_listing_entrys_on_a_cluster(cluster_client: RedisCluster) -> None:
    """A cluster lists a job (admit.lua, the owner's node) before it registers it (register.lua, its bucket's): the
    job's created time is the listing entry's, so newest-first pages and createdDateTime agree (it was the second
    step's own clock reading: adjacent jobs were listed out of createdDateTime order by up to seconds in make
    cluster)."""
    store = _store(cluster_client)
    fields = Job(owner="alpha", callback_url="http://127.0.0.1:1029/h")
    made = await asyncio.gather(
        *(store.register(secrets.token_hex(16), fields, f"http://127.0.0.1:1029/m/c{n}") for n in range(40))
    )
    assert all(m.created for m in made)
    entries = await cluster_client.xrange(store.keyspace.owner_jobs("alpha"))
    listed = {values["j"]: int(entry.split("-")[0]) for entry, values in entries}
    assert len(listed) == 40
    for m in made:
        assert m.job is not None and m.job.created == listed[m.job_id]  # the registration's own answer
        stored = await store.job(m.job_id)
        assert stored is not None and stored.created == listed[m.job_id], (stored.created, listed[m.job_id])
    page, _ = await store.owned_jobs("alpha", 40, "+")
    created = [job.created for job in page]
    assert created == sorted(created, reverse=True)
