"""A monitor shared by many jobs costs Redis the same per job as a monitor of one: a job's start and end do not
read the monitor's other jobs, a claim reads a bounded number of jobs, a poll reads and writes its jobs a chunk at
a time (a poll cut short resumes with the answer it had), and a monitor takes at most RELAY_MONITOR_MAX_JOBS."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.core.monitor import Kind, PollResult, classify
from relay.core.ops import JobOp
from relay.core.schema import Job, Monitor, Phase
from relay.core.tracking import Outcome, PollPolicy, plan_answer, plan_jobs
from relay.simulator import Simulator
from relay.store import keys
from relay.store.jobs import PollWritten, Store, monitor_key
from tests.helpers import Api, Receiver, with_settings

URL = "https://graph.microsoft.com/monitor/crowded"


async def _register(store: Store, count: int, url: str = URL) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(count)]
    fields = Job(owner="public", callback_url="http://127.0.0.1:1029/h")
    await asyncio.gather(*(store.register(job_id, fields, url) for job_id in ids))
    return ids


async def _calls(redis: Redis, *commands: str) -> int:
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands)


def test_a_polls_answer_is_kept_whole_for_a_poll_cut_short() -> None:
    """What a poll in chunks stores in the monitor reads back as the same outcome, error object included."""
    failed = {"error": {"message": "Errors occurred", "details": [{"code": "nameAlreadyExists"}] * 2}}
    answer = classify(200, {"Retry-After": "3"}, json.dumps({"status": "failed", **failed}).encode())
    assert answer.error is not None and answer.error.details
    monitor = Monitor.from_hash("m", {"status": "inProgress", "invalid": "1", "e5": "5"})
    _, outcome = plan_answer(answer, monitor, 1_000_000, PollPolicy.of(Settings()), random.Random(0), jobs=3)
    assert Outcome.from_json(outcome.to_json()) == outcome


async def test_a_jobs_start_and_end_do_not_read_the_monitors_other_jobs(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    ids = await _register(store, 300)
    mk = keys.monitor(monitor_key(URL))
    await redis.config_resetstat()
    for job_id in ids[:150]:
        assert await store.cancel(job_id)
    late = await _register(store, 1)
    assert await _calls(redis, "hkeys", "hgetall", "hvals", "hscan") == 0, "a job's end or start scanned the monitor"
    assert await redis.hget(mk, "jobs") == "151", "its jobs are counted"
    for job_id in ids[150:]:
        assert await store.cancel(job_id)
    assert await redis.exists(mk) and await store.monitors.size() == 1, "one job still shares it"
    assert await store.cancel(late[0])
    assert not await redis.exists(mk) and await store.monitors.size() == 0, "its last job took it along"


async def test_a_monitor_written_before_job_counts_is_counted_once_and_ends_with_its_last_job(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    ids = await _register(store, 40)
    mk = keys.monitor(monitor_key(URL))
    await redis.hdel(mk, "jobs")  # as an earlier version left it: the jobs' fields, no count
    for job_id in ids[:-1]:
        assert await store.cancel(job_id)
        assert await redis.exists(mk), "ended while jobs were left"
    assert await redis.hget(mk, "jobs") == "1"
    assert await store.cancel(ids[-1]) and not await redis.exists(mk)

    # a count too high (an older writer dropped jobs without counting): a claim that finds none ends the monitor
    (lone,) = await _register(store, 1, URL + "/2")
    await redis.hset(keys.monitor(monitor_key(URL + "/2")), "jobs", 5)
    await redis.delete(keys.job(lone))
    (claim,) = await store.monitors.claim(1, lease=30)
    assert store.monitor_state(claim)[1] == []
    assert await store.submit_poll(claim, Monitor(), [], 1.0, jobs=0) == PollWritten(False, [])
    assert await store.monitors.size() == 0


async def test_a_claim_reads_a_bounded_number_of_jobs(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60, chunk=10, claim_jobs=30)
    crowded = await _register(store, 80)
    for i in range(6):
        await _register(store, 8, f"{URL}/{i}")
    claims = await store.monitors.claim(10, lease=30)
    assert len(claims) == 7
    states = {claim.member: store.monitor_state(claim) for claim in claims}
    _, jobs = states.pop(monitor_key(URL))
    assert jobs is None, "the crowded monitor came without its jobs"
    monitor = await store.monitor(monitor_key(URL))
    assert monitor.url == URL and monitor.jobs == len(crowded)
    read = [len(jobs) for _, jobs in states.values() if jobs is not None]
    assert sum(read) <= 30 + 10 and len(read) < 6, "the claim stopped reading jobs at its budget"


async def test_a_claim_of_monitors_of_one_job_reads_every_job_with_them(redis: Redis) -> None:
    """The common case keeps its one step: polled monitors of one job (a dozen fields each) all come with their job."""
    store = Store(redis, retention=60, job_timeout=60)
    for i in range(100):
        await _register(store, 1, f"{URL}/{i}")
    polled = Monitor(
        polls=1, last_polled=1, status="1", percentage=1.0, streak=1, base_ms=1, base_percentage=1.0, operation="1"
    )
    for claim in await store.monitors.claim(100, lease=30):
        assert await store.submit_poll(claim, polled, [], 0.0, jobs=1) == PollWritten(False, [])
    claims = await store.monitors.claim(100, lease=30)
    assert len(claims) == 100 and all(store.monitor_state(claim)[1] for claim in claims)


@pytest.mark.parametrize("listpack_entries", [512, 16])  # the hash as a listpack (HSCAN gives it whole), a hashtable
async def test_a_polls_steps_read_about_a_chunk_each_and_cover_every_job(
    redis: Redis, settings: Settings, listpack_entries: int
) -> None:
    store = Store(redis, retention=60, job_timeout=60, chunk=10)
    previous = (await redis.config_get("hash-max-listpack-entries"))["hash-max-listpack-entries"]
    await redis.config_set("hash-max-listpack-entries", listpack_entries)
    try:
        ids = set(await _register(store, 100))
    finally:
        await redis.config_set("hash-max-listpack-entries", previous)
    encoding = await redis.object("encoding", keys.monitor(monitor_key(URL)))
    assert encoding == ("listpack" if listpack_entries > 128 else "hashtable")
    (claim,) = await store.monitors.claim(1, lease=30)
    monitor = await store.monitor(claim.member)
    answer = PollResult(Kind.PROGRESS, http_status=202, status="inProgress", percentage=10.0)
    plan, outcome = plan_answer(answer, monitor, claim.now_ms, PollPolicy.of(settings), random.Random(0), jobs=100)
    change = plan.monitor_change
    change.outcome = outcome.to_json()
    seen: list[str] = []
    ops: list[JobOp] = []
    cursor, steps = "0", 0
    while True:
        read = await store.poll_chunk(claim, change, ops, cursor, 30_000)
        assert read is not None and read.applied == ["ok"] * len(ops)
        assert len(read.jobs) <= 20, "a step read far more than its chunk"
        change, cursor, steps = Monitor(), read.cursor, steps + 1
        fresh = [job for job in read.jobs if job.id not in seen]
        seen += [job.id for job in fresh]
        ops = plan_jobs(outcome, fresh, PollPolicy.of(settings)).ops
        if cursor == "0":
            break
    assert set(seen) == ids and steps >= 5
    assert (await store.monitor(claim.member)).outcome, "the answer is kept until the last step"
    read = await store.poll_chunk_last(claim, ops, 5.0, len(seen), 30_000)
    assert read is not None and read.applied == ["ok"] * len(ops)
    assert not (await store.monitor(claim.member)).outcome
    jobs = await store.jobs(sorted(ids))
    assert {(job.sequence, job.status) for job in jobs} == {(1, "inProgress")}
    assert await store.poll_chunk_last(claim, ops, 5.0, len(seen), 30_000) is None, "the claim was let go"


async def test_a_crowded_monitor_is_polled_in_chunks_and_every_job_completes(
    api: Api, simulator: Simulator, receiver: Receiver, settings: Settings, start_worker: Callable[..., Any]
) -> None:
    op = simulator.create(duration=1.0)
    body = {"monitorUrl": op.monitor_url, "callbackUrl": receiver.url}
    jobs = [(await api.create(**body))["id"] for _ in range(45)]
    async with start_worker(with_settings(settings, monitor_chunk=8)):
        await receiver.wait_for(lambda: all(receiver.terminal(j) for j in jobs), timeout=15)
    for job_id in jobs:  # (a progress event the completion overtook is not sent: it may be the only event)
        events = receiver.events(job_id)
        assert events[-1]["type"] == "job.completed" and sum(e["type"] == "job.completed" for e in events) == 1
        assert [e["data"]["sequence"] for e in events] == sorted({e["data"]["sequence"] for e in events})
    assert op.polls <= 30, "the monitor was polled once per round, not once per chunk"


async def test_a_poll_cut_short_resumes_with_its_answer_without_asking_the_monitor_again(
    api: Api,
    simulator: Simulator,
    receiver: Receiver,
    redis: Redis,
    settings: Settings,
    start_worker: Callable[..., Any],
) -> None:
    op = simulator.create(duration=60)  # polled now, it would say inProgress
    body = {"monitorUrl": op.monitor_url, "callbackUrl": receiver.url}
    jobs = [(await api.create(**body))["id"] for _ in range(30)]
    store = Store(redis, retention=60, job_timeout=60, chunk=8, claim_jobs=0)
    (claim,) = await store.monitors.claim(1, lease=1)
    assert store.monitor_state(claim)[1] is None
    monitor = await store.monitor(claim.member)
    # a worker saw the copy completed, wrote its answer and the first chunk, then died
    done = PollResult(Kind.COMPLETED, http_status=303, status="completed", percentage=100.0, resource_id="01R")
    plan, outcome = plan_answer(done, monitor, claim.now_ms, PollPolicy.of(settings), random.Random(0), jobs=30)
    change = plan.monitor_change
    change.outcome = outcome.to_json()
    read = await store.poll_chunk(claim, change, [], "0", 1000)
    assert read is not None and read.jobs
    ops = plan_jobs(outcome, read.jobs, PollPolicy.of(settings)).ops
    read = await store.poll_chunk(claim, Monitor(), ops, read.cursor, 1000)
    assert read is not None and read.applied == ["ok"] * len(ops)
    async with start_worker(with_settings(settings, monitor_chunk=8)):
        await receiver.wait_for(lambda: all(receiver.terminal(j) for j in jobs), timeout=15)
    for job_id in jobs:
        terminal = receiver.terminal(job_id)
        assert terminal is not None and terminal["type"] == "job.completed"
        assert terminal["data"]["resourceId"] == "01R"
    assert op.polls == 0, "the monitor was asked again"


async def test_a_monitor_takes_at_most_its_limit_of_jobs(
    simulator: Simulator, receiver: Receiver, settings: Settings
) -> None:
    from tests.helpers import running_api

    op = simulator.create(duration=60)
    body = {"monitorUrl": op.monitor_url, "callbackUrl": receiver.url}
    async with running_api(with_settings(settings, monitor_max_jobs=3)) as api:
        first = [(await api.create(**body))["id"] for _ in range(3)]
        status, problem, resp = await api.request("POST", "/v1/jobs", json=body)
        assert status == 429 and resp.headers["Retry-After"] == "60"
        assert "RELAY_MONITOR_MAX_JOBS" in problem["detail"] and problem["errors"][0]["field"] == "monitorUrl"
        other = simulator.create(duration=60)
        assert (await api.request("POST", "/v1/jobs", json={**body, "monitorUrl": other.monitor_url}))[0] == 201
        assert (await api.request("DELETE", f"/v1/jobs/{first[0]}"))[0] == 204
        assert (await api.request("POST", "/v1/jobs", json=body))[0] == 201, "room again once a job has ended"


async def test_a_recheck_does_not_resolve_again_a_job_this_worker_is_resolving(
    simulator: Simulator, receiver: Receiver, redis: Redis, start_worker: Callable[..., Any]
) -> None:
    """A crowded monitor's jobs wait their turn for a DriveItem request; its once-a-minute recheck finds them still
    resolving and must not send a second request for each."""
    from workers.resolve import resolve_soon

    op = simulator.create(duration=60)
    store = Store(redis, retention=60, job_timeout=60)
    (job_id,) = await _register(store, 1, op.monitor_url)
    await redis.delete(keys.MONITORS)  # nobody polls it: only this test starts its resolution
    template = f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}"
    resolving = Job(
        phase=Phase.RESOLVING, resource_id=op.resource_id, drive_item_url=template, callback_url=receiver.url
    )
    await redis.hset(keys.job(job_id), mapping=resolving.fields)
    async with start_worker() as worker:  # started once the job is set up: its loops find nothing due
        deps = worker.ctx["deps"]
        resolve_soon(deps, job_id)
        resolve_soon(deps, job_id)  # the recheck, while the first is under way
        await asyncio.wait(set(deps.background))
        assert simulator.item_requests == 1
        # it had no authorization: the refusal asks the app for one (job.authorizationRequired), and the job waits
        await receiver.wait_for(lambda: bool(receiver.events(job_id)))
        resolve_soon(deps, job_id)  # a job no longer being resolved here is looked at again (and left: it waits)
        await asyncio.wait(set(deps.background))
        assert simulator.item_requests == 1


async def test_a_stored_answer_that_does_not_read_is_dropped_and_the_monitor_polled_again(
    api: Api, simulator: Simulator, receiver: Receiver, redis: Redis, start_worker: Callable[..., Any]
) -> None:
    op = simulator.create(duration=0.3)
    body = {"monitorUrl": op.monitor_url, "callbackUrl": receiver.url}
    jobs = [(await api.create(**body))["id"] for _ in range(2)]
    await redis.hset(keys.monitor(monitor_key(op.monitor_url)), "outcome", '{"result": {"kind": "sideways"}}')
    async with start_worker():
        await receiver.wait_for(lambda: all(receiver.terminal(j) for j in jobs))
    assert op.polls >= 1
