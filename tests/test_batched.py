"""Batched Lua calls against a real Redis: one EVALSHA per loop turn, failures kept to their call."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from relay.store.batched import BatchedScript

# increments a[1] by a[2] under the shared prefix; a key named 'bad' is a Lua error
_INCR = """
local function one(a)
  if a[1] == 'bad' then error('refused ' .. a[1]) end
  return redis.call('INCRBY', ARGV[1] .. a[1], a[2])
end
"""


async def _evalsha_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_calls_in_one_loop_turn_are_one_evalsha(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, keys=[], shared=["relay:test:"], width=2)
    await script("warm", 1)  # loads the script (NOSCRIPT, then SCRIPT LOAD and a second EVALSHA)
    before = await _evalsha_calls(redis)
    results = await asyncio.gather(*(script(f"k{i % 5}", i) for i in range(100)))
    assert await _evalsha_calls(redis) - before == 1
    # each caller gets its own answer, in the order Redis ran the calls
    assert results[:5] == [0, 1, 2, 3, 4]
    assert results[95:] == [sum(range(j, 100, 5)) for j in range(5)]


async def test_a_failing_call_fails_alone(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, keys=[], shared=["relay:test:"], width=2)
    good, bad, other = await asyncio.gather(script("a", 2), script("bad", 1), script("b", 3), return_exceptions=True)
    assert (good, other) == (2, 3)
    assert isinstance(bad, ResponseError) and "refused bad" in str(bad)


async def test_a_redis_that_forgot_its_scripts_is_taught_again(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, keys=[], shared=["relay:test:"], width=2)
    assert await script("c", 1) == 1
    await redis.script_flush()
    assert await script("c", 1) == 2


async def test_the_argument_count_is_checked(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, keys=[], shared=["relay:test:"], width=2)
    with pytest.raises(TypeError):
        await script("only-one")


async def test_large_bursts_are_split(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, keys=[], shared=["relay:test:"], width=2, max_batch=30)
    await script("warm", 1)
    before = await _evalsha_calls(redis)
    results = await asyncio.gather(*(script("n", 1) for _ in range(100)))
    assert sorted(results) == list(range(1, 101))
    assert await _evalsha_calls(redis) - before == 4


# counts to a[2] before answering: a call that stays at Redis for a while
_SLOW = """
local function one(a)
  local n = 0
  for _ = 1, a[2] do n = n + 1 end
  return redis.call('INCR', ARGV[1] .. a[1])
end
"""


async def test_calls_made_while_one_is_at_redis_go_together(redis: Redis) -> None:
    script = BatchedScript(redis, _SLOW, keys=[], shared=["relay:test:"], width=2, max_inflight=1)
    await script("warm", 0)
    before = await _evalsha_calls(redis)
    first = asyncio.ensure_future(script("slow", 3_000_000))
    await asyncio.sleep(0.005)  # the first call is at Redis
    later = []
    for _ in range(5):
        later.append(asyncio.ensure_future(script("quick", 0)))
        await asyncio.sleep(0)  # each in a loop turn of its own
    assert await first == 1
    assert sorted(await asyncio.gather(*later)) == [1, 2, 3, 4, 5]
    assert await _evalsha_calls(redis) - before == 2
