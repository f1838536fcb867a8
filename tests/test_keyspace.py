"""The key scheme of relay/store/keys.py: one Redis keeps today's keys; a cluster's buckets carry generated hash tags
that spread them evenly over the slots, and every script declares its bucket's anchor (docs/cluster-design.md)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from relay.store import keys
from relay.store.keys import SINGLE, Keyspace
from relay.store.scripts import LUA_DIR, LuaScript, compose
from relay.store.tags import BUCKETS, TAGS, generate, slot_of_bucket

CLUSTER = Keyspace.cluster()


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def test_the_checked_in_tags_are_the_generated_ones_and_each_lands_on_its_slot() -> None:
    assert generate() == TAGS
    assert len(set(TAGS)) == BUCKETS == 128
    for bucket in range(BUCKETS):
        assert slot(CLUSTER.anchor(bucket)) == slot_of_bucket(bucket) == round(bucket * 16384 / BUCKETS)
        assert slot(CLUSTER.in_bucket(keys.STATS, bucket)) == slot_of_bucket(bucket)


@pytest.mark.parametrize("shards", [1, 2, 3, 5, 6, 7, 10, 16, 20, 30])
def test_even_slot_ranges_hold_equal_shares_of_buckets(shards: int) -> None:
    """The contiguous ranges `redis-cli --cluster create` gives shards: each holds 128/shards buckets, give or take
    one."""
    bounds = [round(i * 16384 / shards) for i in range(shards + 1)]
    held = [sum(bounds[i] <= slot_of_bucket(b) < bounds[i + 1] for b in range(BUCKETS)) for i in range(shards)]
    assert sum(held) == BUCKETS
    assert max(held) - min(held) <= 1, held


def test_one_redis_keeps_todays_keys() -> None:
    job_id = "ab" * 16
    assert SINGLE.job(job_id) == keys.job(job_id) == f"relay:job:{job_id}"
    assert SINGLE.job_events(job_id) == keys.job_events(job_id)
    assert SINGLE.event("msg_1", job_id) == "relay:event:msg_1"
    assert SINGLE.monitor("m1") == "relay:monitor:m1"
    assert SINGLE.owner_jobs("alpha") == "relay:jobs:alpha"
    assert SINGLE.idempotency("alpha", "d") == keys.idempotency("alpha", "d")
    assert SINGLE.anchor(0) == keys.ANCHOR == "relay:~"
    assert SINGLE.new_job_id("m1") != SINGLE.new_job_id("m1")
    assert SINGLE.every(keys.STATS) == [keys.STATS]


def test_a_cluster_keeps_a_monitors_jobs_and_events_in_the_monitors_bucket() -> None:
    for n in range(200):
        monitor = f"monitor-{n}"
        bucket = CLUSTER.bucket_of(monitor)
        job_id = CLUSTER.new_job_id(monitor)
        assert len(job_id) == 32 and int(job_id, 16) >= 0
        assert CLUSTER.bucket_of_job(job_id) == bucket
        anchor = slot(CLUSTER.anchor(bucket))
        for key in (
            CLUSTER.monitor(monitor),
            CLUSTER.job(job_id),
            CLUSTER.job_events(job_id),
            CLUSTER.job_outbox(job_id),
            CLUSTER.job_attempts(job_id),
            CLUSTER.event(f"msg_{n}", job_id),
            CLUSTER.owner_dead_letters("alpha", bucket),
        ):
            assert key.startswith(f"relay:{{{TAGS[bucket]}}}:")
            assert slot(key) == anchor
        owner = CLUSTER.bucket_of("alpha")
        assert slot(CLUSTER.owner_jobs("alpha")) == slot(CLUSTER.idempotency("alpha", "d")) == slot_of_bucket(owner)
    assert len({CLUSTER.bucket_of(f"m{n}") for n in range(2000)}) == BUCKETS


SCRIPTS = sorted(path.name for path in LUA_DIR.glob("*.lua"))


@pytest.mark.parametrize("name", SCRIPTS)
async def test_every_script_takes_its_keys_tag_from_the_anchor_and_refuses_to_run_keyless(
    redis: Redis, name: str
) -> None:
    """A script with no key would go to a random node of a cluster: every relay script reads its tag from KEYS[1]
    first, so run without one it fails before touching anything."""
    script = LuaScript.load(name)
    assert "local TAG = string.sub(KEYS[1]" in compose(name)
    with pytest.raises(ResponseError, match="string expected, got nil"):
        await script.run(redis, [], ["{}"])
    assert await redis.dbsize() == 0


async def test_the_lua_key_functions_take_the_anchors_tag(redis: Redis) -> None:
    probe = LuaScript.from_source(
        "probe.lua",
        "return {key_job('j1'), key_event('e1'), KEY_MONITORS, key_sched_lanes(KEY_DELIVERIES), "
        "key_owner_jobs('alpha'), key_sched_wake(KEY_MONITORS)}",
    )
    assert await probe.run(redis) == [
        keys.job("j1"),
        keys.event("e1"),
        keys.MONITORS,
        keys.sched_lanes(keys.DELIVERIES),
        keys.owner_jobs("alpha"),
        keys.sched_wake(keys.MONITORS),
    ]
    assert await redis.keys("*") == [], "one Redis: no anchor written"
    bucket = 5
    tagged = await probe.run(redis, [CLUSTER.anchor(bucket)])
    assert tagged == [
        CLUSTER.in_bucket(keys.job("j1"), bucket),
        CLUSTER.in_bucket(keys.event("e1"), bucket),
        CLUSTER.in_bucket(keys.MONITORS, bucket),
        CLUSTER.in_bucket(keys.sched_lanes(keys.DELIVERIES), bucket),
        CLUSTER.in_bucket(keys.owner_jobs("alpha"), bucket),
        keys.sched_wake(keys.MONITORS),  # a channel has no slot: one for every bucket
    ]
    assert await redis.keys("*") == [CLUSTER.anchor(bucket)], "a bucket's anchor is written by its first script"
