"""The Lua scripts (relay/store/lua) one by one against a real Redis: keys, field names, lanes and guards."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from relay.core.ops import JobOp, NewEvent
from relay.core.schema import (
    MONITOR_JOB_PREFIX,
    DeliveryOutcome,
    Event,
    EventState,
    Job,
    JobStatus,
    Migrations,
    Monitor,
    Phase,
    Stats,
)
from relay.store import keys
from relay.store.jobs import PollWritten, Store, monitor_key
from relay.store.scheduler import Scheduler
from relay.store.scripts import LuaScript

TENANT_A = "aaaaaaaa" + "0" * 16  # owners are token digests: their first 8 characters name the lane
TENANT_B = "bbbbbbbb" + "0" * 16


def _event(kind: str) -> NewEvent:
    return {"id": f"msg_{uuid.uuid4().hex}", "type": kind, "body": "{}"}


async def _register(store: Store, owner: str = "public", url: str | None = None) -> str:
    job_id = uuid.uuid4().hex
    fields = Job(owner=owner, callback_url="http://127.0.0.1:1029/h")
    await store.register(job_id, fields, url or f"https://graph.microsoft.com/monitor/{job_id}")
    return job_id


async def test_the_scripts_field_names_and_state_words_are_the_schemas(redis: Redis) -> None:
    probe = LuaScript.from_source(
        "probe.lua",
        "return {JOB.sequence, MONITOR.percentage, MONITOR.not_before, EVENT.state, MIGRATIONS.dead, STATS.registered, "
        "JOB_STATUS.CANCELLED, PHASE.AUTHORIZING, EVENT_STATE.SUPERSEDED, OUTCOME.NONE, MONITOR_JOB}",
    )
    assert await probe.run(redis) == [
        Job.name_of(lambda j: j.sequence),
        Monitor.name_of(lambda m: m.percentage),
        Monitor.name_of(lambda m: m.not_before),
        Event.name_of(lambda e: e.state),
        Migrations.name_of(lambda m: m.dead),
        Stats.name_of(lambda s: s.registered),
        JobStatus.CANCELLED.value,
        Phase.AUTHORIZING.value,
        EventState.SUPERSEDED.value,
        DeliveryOutcome.NONE.value,
        MONITOR_JOB_PREFIX,
    ]
    assert [
        Job.name_of(lambda j: j.sequence),
        *Monitor.names_of(lambda m: (m.percentage, m.not_before)),
    ] == ["seq", "pct", "nb"]


async def test_a_field_name_the_schema_does_not_declare_fails_the_script(redis: Redis) -> None:
    misspelt = LuaScript.from_source("misspelt.lua", "return redis.call('HGET', key_job('j1'), JOB.sequense)")
    with pytest.raises(ResponseError, match=r"relay: no JOB\.sequense"):
        await misspelt.run(redis)


async def test_the_scripts_key_functions_are_keys_py(redis: Redis) -> None:
    probe = LuaScript.from_source(
        "probe.lua",
        "return {KEY_MONITORS, key_job('j1'), key_job_outbox('j1'), key_event('e1'), key_monitor('m1'), "
        "key_sched_lane('s', 'l'), key_sched_tokens('s')}",
    )
    assert await probe.run(redis) == [
        keys.MONITORS,
        keys.job("j1"),
        keys.job_outbox("j1"),
        keys.event("e1"),
        keys.monitor("m1"),
        keys.sched_lane("s", "l"),
        keys.sched_tokens("s"),
    ]


async def test_a_tenants_backlog_does_not_keep_another_tenants_monitor_waiting(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    for _ in range(300):
        await _register(store, TENANT_A)
    lone = await _register(store, TENANT_B)
    lone_monitor = monitor_key(f"https://graph.microsoft.com/monitor/{lone}")
    claims = await store.monitors.claim(20, lease=30)
    assert len(claims) == 20
    assert lone_monitor in {c.member for c in claims}, "the lone job's monitor waited behind the backlog"
    assert {c.token.split("|")[0] for c in claims} == {TENANT_A[:8], TENANT_B[:8]}


async def test_an_unused_share_goes_to_the_lanes_with_more_due(redis: Redis) -> None:
    sched = Scheduler(redis, "relay:test:sched")
    for i in range(10):
        await sched.add(f"a{i}", lane="a")
    await sched.add("b0", lane="b")
    claims = await sched.claim(8, lease=30)
    assert len(claims) == 8 and "b0" in {c.member for c in claims}
    assert await sched.size() == 11


async def test_members_written_before_lanes_are_still_claimed(redis: Redis) -> None:
    await redis.zadd(keys.MONITORS, {"legacy-monitor": 0})  # as an earlier version left it: no lanes entry
    sched = Scheduler(redis, keys.MONITORS)
    assert [c.member for c in await sched.claim(5, lease=30)] == ["legacy-monitor"]


async def test_a_write_back_with_a_stale_token_changes_nothing(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    job_id = await _register(store, TENANT_A)
    (claim,) = await store.monitors.claim(1, lease=0)  # the lease runs out at once
    (again,) = await store.monitors.claim(1, lease=30)  # another worker takes it over
    assert again.token != claim.token
    assert (await store.submit_poll(claim, Monitor(status="x"), [], 1.0)).stale
    assert await store.submit_poll(again, Monitor(status="inProgress"), [], 5.0) == PollWritten(False, [])
    job = await store.job(job_id)
    assert job is not None
    info = await store.poll_info(job)
    assert info.due is not None and info.due >= again.now_ms + 4000, "rescheduled in its lane"


async def test_an_idempotency_key_finds_its_job_and_a_reservation_lets_only_its_holder_through(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    key = ("owner", "k" * 32, "d" * 32)
    fields = Job(owner="owner", callback_url="http://127.0.0.1:1029/h")
    assert await store.reserve(key, "held-by-me", 30) is None
    earlier = await store.register("someone-else", fields, "https://graph.microsoft.com/m/1", idempotency=key)
    assert not earlier.created and earlier.pending and earlier.job_id == "held-by-me"
    mine = await store.register("held-by-me", fields, "https://graph.microsoft.com/m/1", idempotency=key)
    assert mine.created and mine.job is not None
    again = await store.register("third", fields, "https://graph.microsoft.com/m/1", idempotency=key)
    assert not again.created and not again.pending and again.job_id == "held-by-me"


async def test_a_guarded_change_is_refused_when_a_field_it_expects_moved(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    job_id = await _register(store)
    await redis.hset(keys.job(job_id), mapping={"phase": "resolving", "authorization": "old"})
    resolving = Phase.RESOLVING
    stale = JobOp(job_id, 0, phase=resolving, expect=Job(authorization="older"), set=Job(phase=Phase.DONE))
    assert await store.apply_job(stale) == "stale"
    fresh = JobOp(job_id, 0, phase=resolving, expect=Job(authorization="old"), events=[_event("job.progress")])
    assert await store.apply_job(fresh) == "ok"
    assert await store.apply_job(fresh) == "stale", "the sequence moved on"


async def test_waking_a_job_brings_its_monitor_forward_and_a_patch_wakes_a_waiting_job(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    job_id = await _register(store, TENANT_A)
    (claim,) = await store.monitors.claim(1, lease=30)
    await store.submit_poll(claim, Monitor(), [], 3600.0)
    job = await store.job(job_id)
    assert job is not None
    later = (await store.poll_info(job)).due
    assert later is not None
    waiting = Job(phase=Phase.AUTHORIZING)
    await store.apply_job(JobOp(job=job_id, prev_seq=0, set=waiting, wake_ms=int(later) - 1_000_000))
    assert (await store.poll_info(job)).due == later - 1_000_000
    assert await store.patch(job_id, Job(authorization="fresh")) == "woken"
    woken = await store.job(job_id)
    assert woken is not None and woken.phase == "resolving"
    assert [c.member for c in await store.monitors.claim(5, lease=30)] == [claim.member]


async def test_an_ending_job_keeps_its_monitors_poll_record_and_the_last_job_ends_the_monitor(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    job_id = await _register(store, TENANT_B)
    (claim,) = await store.monitors.claim(1, lease=30)
    await store.submit_poll(claim, Monitor(polls=3, last_polled=1700000000000), [], 0.0)
    assert await store.cancel(job_id)
    job = await store.job(job_id)
    assert job is not None and (job.polls, job.last_polled, job.terminal) == (3, 1700000000000, True)
    assert not await redis.exists(keys.monitor(claim.member))
    assert await store.monitors.size() == 0
    # the lane's score still says due now (kept exact only when it moves earlier): a claim puts it right
    assert await store.monitors.claim(5, lease=30) == []
    assert await redis.zcard(keys.sched_lanes(keys.MONITORS)) == 0, "a claim puts an empty lane out of the lanes"


async def test_a_polls_write_ends_a_monitor_once_its_last_job_has_gone_and_not_before(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    url = "https://graph.microsoft.com/monitor/shared"
    first, second = await _register(store, url=url), await _register(store, url=url)
    mk = monitor_key(url)

    def ended(job_id: str) -> JobOp:
        done = Job(status=JobStatus.COMPLETED, percentage=100.0, phase=Phase.DONE)
        return JobOp(job=job_id, prev_seq=0, set=done, events=[_event("job.completed")], terminal=True)

    (claim,) = await store.monitors.claim(1, lease=30)
    assert await store.submit_poll(claim, Monitor(status="inProgress"), [], 0.0, jobs=2) == PollWritten(False, [])
    assert await store.monitors.size() == 1
    (claim,) = await store.monitors.claim(1, lease=30)
    done = await store.submit_poll(claim, Monitor(status="completed"), [ended(first)], 0.0, jobs=2)
    assert done == PollWritten(False, ["ok"])
    assert await redis.exists(keys.monitor(mk)) and await store.monitors.size() == 1, "one job still shares it"
    (claim,) = await store.monitors.claim(1, lease=30)
    assert len(store.monitor_state(claim)[1] or ()) == 1
    await redis.delete(keys.job(second))  # the job's hash goes (expired) between the claim and the write
    assert await store.submit_poll(claim, Monitor(), [ended(second)], 0.0, jobs=1) == PollWritten(False, ["missing"])
    assert not await redis.exists(keys.monitor(mk)) and await store.monitors.size() == 0

    lone = await _register(store, url=url + "/2")
    await redis.delete(keys.job(lone))
    (claim,) = await store.monitors.claim(1, lease=30)
    assert store.monitor_state(claim)[1] == [], "the claim dropped the job that no longer exists"
    assert await store.submit_poll(claim, Monitor(), [], 1.0, jobs=0) == PollWritten(False, [])
    assert await store.monitors.size() == 0, "a write with no jobs left ends the monitor"


async def test_a_job_keeps_its_newest_thousand_attempt_records(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    job_id = await _register(store)
    event = _event("job.completed")
    await store.apply_job(JobOp(job=job_id, prev_seq=0, events=[event], terminal=True))
    for first, count in ((0, 999), (999, 3)):
        (claim,) = await store.deliveries.claim(1, lease=30)
        records = [{"eventId": event["id"], "attempt": first + i + 1} for i in range(count)]
        await store.submit_ack(claim, event_id=event["id"], outcome=DeliveryOutcome.FAILED, records=records)
    kept = await redis.lrange(keys.job_attempts(job_id), 0, -1)
    assert len(kept) == 1000
    assert [json.loads(r)["attempt"] for r in (kept[0], kept[-1])] == [3, 1002]


async def _next_message(pubsub: Any, seconds: float) -> dict[str, Any] | None:
    """The next published message within ``seconds`` (get_message answers None for the subscription's ack)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        message = await pubsub.get_message(timeout=left)
        if message is not None:
            return dict(message)
    return None


async def test_a_member_due_before_every_other_wakes_idle_workers(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(keys.sched_wake(keys.MONITORS))
        await _register(store)  # the schedule was empty: a wake-up
        first = await _next_message(pubsub, 2.0)
        assert first is not None and first["channel"] == keys.sched_wake(keys.MONITORS)
        await _register(store)  # due no earlier than the first: nobody to wake
        assert await _next_message(pubsub, 0.3) is None
    batch = await store.monitors.claim_batch(1, lease=30)
    assert len(batch.claims) == 1 and batch.next_due_in == 0.0, "the other monitor is due now"


async def test_a_monitors_text_with_a_lone_surrogate_is_written_with_a_replacement_character(redis: Redis) -> None:
    """Redis' cjson refuses the escape Python writes for a lone surrogate: the write would fail at every poll."""
    store = Store(redis, retention=60, job_timeout=60)
    job_id = await _register(store)
    (claim,) = await store.monitors.claim(1, lease=30)
    change = JobOp(job_id, 0, set=Job(status_description="half \ud800 a pair"), events=[_event("job.progress")])
    written = await store.submit_poll(claim, Monitor(status_description="odd \udfff"), [change], 1.0, jobs=1)
    assert written == PollWritten(False, ["ok"])
    job, monitor = await store.job(job_id), await store.monitor(claim.member)
    assert job is not None and job.status_description == "half \ufffd a pair"
    assert monitor.status_description == "odd \ufffd"
