"""Listing, the owner's stream and dead letters read indexes of the caller's own: what other tenants hold changes
neither what a tenant sees nor what its first page costs, and cursors name only the tenant's own jobs. Jobs and
dead letters from before these indexes are moved into them when the API starts. Long-polls are streams too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.config.tenants import owner_of
from relay.core.ops import JobOp
from relay.core.schema import DeliveryOutcome, Job
from relay.store import keys
from relay.store.jobs import Store
from relay.store.open import open_store
from tests.helpers import Api, auth, read_sse, running_api, two_tenants

A, B = auth("token-a"), auth("token-b")
#: another tenant's jobs and dead letters, all newer than the first tenant's: enough that a listing which reads
#: them costs measurably more (the equal cost below then says none were read; before per-owner indexes, past
#: 5,000 jobs or 1,000 dead letters, the first tenant's page was empty)
OTHER_JOBS = 1_000
OTHER_DEAD = 300


@pytest.fixture
async def store(settings: Settings, redis: Redis) -> AsyncIterator[Store]:
    opened = open_store(settings)
    yield opened
    await opened.redis.aclose()


async def register(store: Store, owner: str, count: int) -> list[str]:
    """``count`` jobs of ``owner`` registered as the API registers them (the batched script), newest last."""
    ids = [secrets.token_hex(16) for _ in range(count)]
    fields = Job(owner=owner, callback_url="http://127.0.0.1:1029/h")
    await asyncio.gather(
        *(store.register(i, fields, f"http://127.0.0.1:1029/m/{i}") for i in ids)  # one monitor each
    )
    return ids


async def dead_letter(store: Store, job_ids: list[str]) -> None:
    """Each job records an event whose delivery then dies, as a worker's ack of a last failed attempt does."""
    body = '{"type":"job.progress"}'
    await asyncio.gather(
        *(
            store.apply_job(JobOp(job=j, prev_seq=0, events=[{"id": f"msg_{j}", "type": "job.progress", "body": body}]))
            for j in job_ids
        )
    )
    left = set(job_ids)
    while left:
        claims = [c for c in await store.deliveries.claim(2_000, 30) if c.member in left]
        acks = [store.submit_ack(c, event_id=f"msg_{c.member}", outcome=DeliveryOutcome.DEAD) for c in claims]
        assert all(answer == 1 for answer in await asyncio.gather(*acks))
        left -= {c.member for c in claims}


async def commands(redis: Redis, api: Api, path: str) -> tuple[Any, Counter[str]]:
    """The answer to ``GET path`` as tenant A, and the Redis commands it took (by name, with their counts)."""
    await redis.config_resetstat()
    status, body, _ = await api.request("GET", path, headers=A)
    assert status == 200, body
    stats = await redis.info("commandstats")
    used = Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})
    for ours in ("config|resetstat", "info"):  # this function's own
        used.pop(ours, None)
    return body, used


async def test_other_tenants_jobs_change_neither_what_a_tenant_sees_nor_what_it_costs(
    settings: Settings, redis: Redis, store: Store
) -> None:
    owner_a, owner_b = owner_of("token-a"), owner_of("token-b")
    async with running_api(two_tenants(settings)) as api:
        mine = await register(store, owner_a, 3)
        await dead_letter(store, mine[:1])
        await api.request("GET", "/v1/jobs", headers=A)  # the API's first listing moves what older versions left
        first, cost = await commands(redis, api, "/v1/jobs?limit=2")
        dead, dead_cost = await commands(redis, api, "/v1/dead-letters")

        theirs = await register(store, owner_b, OTHER_JOBS)  # all newer than A's
        await dead_letter(store, theirs[:OTHER_DEAD])

        page, page_cost = await commands(redis, api, "/v1/jobs?limit=2")
        assert [j["id"] for j in page["jobs"]] == [mine[2], mine[1]]
        assert page_cost == cost, "the first page cost more Redis work because of another tenant's jobs"
        assert page == first
        # the cursor is A's own: it leads to A's next job and says nothing of B's
        rest, _ = await commands(redis, api, f"/v1/jobs?limit=2&cursor={page['nextCursor']}")
        assert [j["id"] for j in rest["jobs"]] == [mine[0]] and rest["nextCursor"] is None
        newest_b = (await redis.hget(keys.job(theirs[-1]), "created")) or ""
        assert int(page["nextCursor"].split("-")[0]) < int(newest_b)
        everything, _ = await commands(redis, api, "/v1/jobs?limit=200")
        assert [j["id"] for j in everything["jobs"]] == mine[::-1]

        letters, letters_cost = await commands(redis, api, "/v1/dead-letters")
        assert letters == dead and [d["jobId"] for d in letters["deadLetters"]] == mine[:1]
        assert letters_cost == dead_cost

        async with api.session.get(f"{api.base}/v1/stream", headers=A) as resp:
            shown = await asyncio.wait_for(read_sse(resp, until=3), 5)
        assert sorted(json.loads(m["data"])["id"] for m in shown) == sorted(mine)
        status, other, _ = await api.request("GET", "/v1/jobs?limit=200", headers=B)
        assert status == 200 and not {j["id"] for j in other["jobs"]} & set(mine)


async def test_jobs_and_dead_letters_of_the_previous_version_are_moved_at_start(
    settings: Settings, redis: Redis, store: Store
) -> None:
    """The shared index and dead letters as the version before per-owner indexes wrote them: after a restart
    every job is listed in the same order under the same cursors, and every dead letter by its owner."""
    owner_a, owner_b = owner_of("token-a"), owner_of("token-b")
    jobs = []
    for n in range(6):
        owner = owner_a if n % 2 == 0 else owner_b
        job_id = secrets.token_hex(16)
        await redis.hset(keys.job(job_id), mapping={"owner": owner, "created": str(1_000 + n), "seq": "1"})
        entry = await redis.xadd(keys.JOBS_INDEX, {"j": job_id})  # the shared index of the version before
        jobs.append((job_id, owner, entry))
    await redis.xadd(keys.JOBS_INDEX, {"j": secrets.token_hex(16)})  # a job that has since expired
    for n, (job_id, _, _) in enumerate(jobs[:2]):
        await redis.hset(
            keys.event(f"msg_{job_id}"), mapping={"job": job_id, "type": "job.completed", "seq": "1", "state": "dead"}
        )
        await redis.zadd(keys.DEAD_LETTERS, {f"msg_{job_id}": 5_000 + n})

    async with running_api(two_tenants(settings)) as api:
        for headers, owner in ((A, owner_a), (B, owner_b)):
            theirs = [(job_id, entry) for job_id, o, entry in jobs if o == owner][::-1]
            status, page, _ = await api.request("GET", "/v1/jobs?limit=2", headers=headers)
            assert status == 200 and [j["id"] for j in page["jobs"]] == [j for j, _ in theirs[:2]]
            assert page["nextCursor"] == theirs[1][1], "a cursor from before the upgrade would lead elsewhere"
            _, rest, _ = await api.request("GET", f"/v1/jobs?cursor={page['nextCursor']}", headers=headers)
            assert [j["id"] for j in rest["jobs"]] == [theirs[2][0]] and rest["nextCursor"] is None
            _, letters, _ = await api.request("GET", "/v1/dead-letters", headers=headers)
            expected = [job_id for job_id, o, _ in jobs[:2] if o == owner]
            assert [d["jobId"] for d in letters["deadLetters"]] == expected
    assert not await redis.exists(keys.JOBS_INDEX), "the shared index was left behind"
    # a second start finds nothing left to move and changes nothing
    before = {key: await redis.type(key) for key in await redis.keys(f"{keys.PREFIX}*")}
    async with running_api(two_tenants(settings)) as api:
        _, page, _ = await api.request("GET", "/v1/jobs", headers=A)
        assert len(page["jobs"]) == 3
    assert {key: await redis.type(key) for key in await redis.keys(f"{keys.PREFIX}*")} == before


async def test_a_long_poll_holds_one_of_the_tenants_streams(settings: Settings, redis: Redis, store: Store) -> None:
    (job,) = await register(store, owner_of("token-a"), 1)
    (other,) = await register(store, owner_of("token-b"), 1)
    async with running_api(two_tenants(settings, tenant_max_streams=1)) as api:
        waiting = asyncio.create_task(api.request("GET", f"/v1/jobs/{job}?wait=3", headers=A))
        try:
            await asyncio.sleep(0.3)
            status, problem, resp = await api.request("GET", f"/v1/jobs/{job}?wait=0.2", headers=A)
            assert status == 429 and resp.headers["Retry-After"] == "5", problem
            status, _, _ = await api.request("GET", "/v1/stream", headers=A)
            assert status == 429
            status, _, _ = await api.request("GET", f"/v1/jobs/{other}?wait=0.2", headers=B)
            assert status == 200, "another tenant is not held back"
            status, _, _ = await api.request("GET", f"/v1/jobs/{job}", headers=A)
            assert status == 200, "a plain read holds no stream"
        finally:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting


async def test_an_entry_an_older_api_wrote_beside_a_newer_one_is_moved_as_the_newest(
    redis: Redis, store: Store
) -> None:
    """During a rolling upgrade an older API may index a job in the shared index after a newer one indexed a later
    job of the same owner: it cannot keep its entry id (owner indexes only grow), so it is moved as the newest."""
    owner = owner_of("token-a")
    late, early = secrets.token_hex(16), secrets.token_hex(16)
    for job_id in (late, early):
        await redis.hset(keys.job(job_id), mapping={"owner": owner, "seq": "0"})
    await redis.xadd(keys.JOBS_INDEX, {"j": early}, id="1000-0")  # the older API's
    await redis.xadd(keys.owner_jobs(owner), {"j": late}, id="2000-0")  # the newer API's, later
    await store.owner_indexes()
    moved = await redis.xrange(keys.owner_jobs(owner))
    assert [entry["j"] for _, entry in moved] == [late, early] and int(moved[1][0].split("-")[0]) > 2000
    assert not await redis.exists(keys.JOBS_INDEX)
