"""The due-time scheduler against a real Redis: claims, leases, stale tokens."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from relay.store.scheduler import Scheduler


async def test_claim_takes_only_due_members_once(redis: Redis) -> None:
    sched = Scheduler(redis, "relay:test:sched")
    await sched.add("a")
    await sched.add("b")
    await sched.add("later", 60)
    claims = await sched.claim(10, lease=30)
    assert sorted(c.member for c in claims) == ["a", "b"]
    assert await sched.claim(10, lease=30) == []  # leased, not due again


async def test_claim_respects_the_limit(redis: Redis) -> None:
    sched = Scheduler(redis, "relay:test:sched")
    for i in range(5):
        await sched.add(f"m{i}")
    assert len(await sched.claim(3, lease=30)) == 3
    assert len(await sched.claim(3, lease=30)) == 2


async def test_an_expired_lease_comes_due_again(redis: Redis) -> None:
    sched = Scheduler(redis, "relay:test:sched")
    await sched.add("a")
    first = await sched.claim(1, lease=0.1)
    await asyncio.sleep(0.15)
    second = await sched.claim(1, lease=30)
    assert [c.member for c in second] == ["a"]
    assert first[0].token != second[0].token
    # the crashed worker's late write is refused; the new holder's is taken
    assert not await sched.reschedule(first[0], 0)
    assert await sched.reschedule(second[0], 0)
    assert [c.member for c in await sched.claim(1, lease=30)] == ["a"]


async def test_finish_removes_and_reschedule_delays(redis: Redis) -> None:
    sched = Scheduler(redis, "relay:test:sched")
    await sched.add("a")
    await sched.add("b")
    a, b = sorted(await sched.claim(2, lease=30), key=lambda c: c.member)
    assert await sched.finish(a)
    assert await sched.reschedule(b, 60)
    assert await sched.size() == 1
    due = await sched.due_at("b")
    assert due is not None and due * 1000 - b.now_ms >= 59_000


async def test_only_new_does_not_move_a_scheduled_member(redis: Redis) -> None:
    sched = Scheduler(redis, "relay:test:sched")
    await sched.add("a", 60)
    await sched.add("a", 0, only_new=True)
    assert await sched.claim(1, lease=30) == []


async def test_concurrent_claimers_never_share_a_member(redis: Redis) -> None:
    sched = Scheduler(redis, "relay:test:sched")
    for i in range(200):
        await sched.add(f"m{i}")
    results = await asyncio.gather(*(sched.claim(30, lease=30) for _ in range(10)))
    members = [c.member for claims in results for c in claims]
    assert len(members) == len(set(members)) == 200
