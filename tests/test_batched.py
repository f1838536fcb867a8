"""Batched Lua calls against a real Redis: one EVALSHA per loop turn, failures kept to their call."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from relay.store.batched import BatchedScript
from relay.store.scripts import LuaScript

# increments call.key by call.by under the shared prefix; a key named 'bad' is a Lua error
_INCR = LuaScript.from_source(
    "incr.lua",
    """--! uses lib/batch.lua
local prefix = BATCH.prefix
local function one(call)
  if call.key == 'bad' then error('refused ' .. call.key) end
  return {value = redis.call('INCRBY', prefix .. call.key, call.by)}
end
return run_batch(one)
""",
)


_SHARED = {"prefix": "relay:test:"}


def _value(answer: dict[str, Any]) -> Any:
    return answer["value"]


def incr(key: str, by: int) -> dict[str, object]:
    return {"key": key, "by": by}


async def _evalsha_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_calls_in_one_loop_turn_are_one_evalsha(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, shared=_SHARED, answer=_value)
    await script(incr("warm", 1))  # loads the script (NOSCRIPT, then SCRIPT LOAD and a second EVALSHA)
    before = await _evalsha_calls(redis)
    results = await asyncio.gather(*(script(incr(f"k{i % 5}", i)) for i in range(100)))
    assert await _evalsha_calls(redis) - before == 1
    # each caller gets its own answer, in the order Redis ran the calls
    assert results[:5] == [0, 1, 2, 3, 4]
    assert results[95:] == [sum(range(j, 100, 5)) for j in range(5)]


async def test_a_failing_call_fails_alone(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, shared=_SHARED, answer=_value)
    good, bad, other, broken = await asyncio.gather(
        script(incr("a", 2)), script(incr("bad", 1)), script(incr("b", 3)), script({"key": "c"}), return_exceptions=True
    )
    assert (good, other) == (2, 3)
    assert isinstance(bad, ResponseError) and "refused bad" in str(bad)
    assert isinstance(broken, ResponseError), "a call missing a field fails in Lua, alone"


async def test_a_redis_that_forgot_its_scripts_is_taught_again(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, shared=_SHARED, answer=_value)
    assert await script(incr("c", 1)) == 1
    await redis.script_flush()
    assert await script(incr("c", 1)) == 2


async def test_large_bursts_are_split(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, shared=_SHARED, answer=_value, max_batch=30)
    await script(incr("warm", 1))
    before = await _evalsha_calls(redis)
    results = await asyncio.gather(*(script(incr("n", 1)) for _ in range(100)))
    assert sorted(results) == list(range(1, 101))
    assert await _evalsha_calls(redis) - before == 4


async def test_a_batch_carries_at_most_its_weight_and_a_heavy_call_goes_alone(redis: Redis) -> None:
    """A poll's write weighs its job changes: one crowded monitor's write does not ride with hundreds of others."""
    script = BatchedScript(redis, _INCR, shared=_SHARED, answer=_value, max_weight=10, max_inflight=1)
    await script(incr("warm", 1))
    before = await _evalsha_calls(redis)
    weights = [3, 3, 3, 30, 1, 1]
    futures = [script.submit(incr(f"w{i}", 1), weight=w) for i, w in enumerate(weights)]
    assert await asyncio.gather(*futures) == [1] * len(weights)
    assert await _evalsha_calls(redis) - before == 3, "[3, 3, 3], [30] alone, [1, 1]"


# counts to call.loops before answering: a call that stays at Redis for a while
_SLOW = LuaScript.from_source(
    "slow.lua",
    """--! uses lib/batch.lua
local prefix = BATCH.prefix
local function one(call)
  local n = 0
  for _ = 1, call.loops do n = n + 1 end
  return {value = redis.call('INCR', prefix .. call.key)}
end
return run_batch(one)
""",
)


async def test_calls_made_while_one_is_at_redis_go_together(redis: Redis) -> None:
    script = BatchedScript(redis, _SLOW, shared=_SHARED, answer=_value, max_inflight=1)
    await script({"key": "warm", "loops": 0})
    before = await _evalsha_calls(redis)
    first = asyncio.ensure_future(script({"key": "slow", "loops": 3_000_000}))
    await asyncio.sleep(0.005)  # the first call is at Redis
    later = []
    for _ in range(5):
        later.append(asyncio.ensure_future(script({"key": "quick", "loops": 0})))
        await asyncio.sleep(0)  # each in a loop turn of its own
    assert await first == 1
    assert sorted(await asyncio.gather(*later)) == [1, 2, 3, 4, 5]
    assert await _evalsha_calls(redis) - before == 2


async def test_submitted_calls_are_answered_later_and_drain_waits_for_them(redis: Redis) -> None:
    script = BatchedScript(redis, _SLOW, shared=_SHARED, answer=_value, max_inflight=1)
    await script({"key": "warm", "loops": 0})
    slow = script.submit({"key": "s", "loops": 2_000_000})
    quick = [script.submit({"key": "q", "loops": 0}) for _ in range(3)]
    assert script.backlog == 4, "handed over, none answered yet"
    assert not slow.done()
    await script.drain()
    assert script.backlog == 0
    assert slow.result() == 1
    assert sorted(f.result() for f in quick) == [1, 2, 3]


async def test_a_submitted_call_that_fails_says_so_on_its_future(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, shared=_SHARED, answer=_value)
    bad, good = script.submit(incr("bad", 1)), script.submit(incr("fine", 1))
    await script.drain()
    assert isinstance(bad.exception(), ResponseError)
    assert good.result() == 1
    assert script.backlog == 0


async def test_what_follows_a_call_runs_in_the_turn_that_answered_it_and_cannot_break_the_batch(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, shared=_SHARED, answer=_value)
    followed: list[tuple[str, Any]] = []

    def note(name: str) -> Any:
        def landed(future: asyncio.Future[Any]) -> None:
            followed.append((name, future.exception() or future.result()))
            if name == "raises":
                raise RuntimeError("a follow-up that fails")

        return landed

    calls = {name: script.submit(incr(key, 1), landed=note(name)) for name, key in [("raises", "x"), ("bad", "bad")]}
    calls["after"] = script.submit(incr("y", 5), landed=note("after"))
    await script.drain()  # no loop turn after the batch's own: each follow-up ran as its future was set
    assert [name for name, _ in followed] == ["raises", "bad", "after"]
    assert followed[0][1] == 1 and isinstance(followed[1][1], ResponseError) and followed[2][1] == 5
    assert calls["after"].result() == 5, "the follow-up that raised did not keep the next call from its answer"


async def test_what_follows_a_call_runs_when_its_batch_fails_as_a_whole(redis: Redis) -> None:
    script = BatchedScript(redis, _INCR, shared=_SHARED, answer=_value)
    await script(incr("warm", 1))
    gone = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens there
    script.redis = gone
    seen: list[BaseException | None] = []
    pending = script.submit(incr("k", 1), landed=lambda future: seen.append(future.exception()))
    await script.drain()
    await gone.aclose()
    assert pending.done() and len(seen) == 1 and isinstance(seen[0], RedisConnectionError)
