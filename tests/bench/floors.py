"""Floors: the least a durable version of each bare loop does, so relay's cost splits into the two.

A bare loop (hello world, the POST loop) keeps nothing. relay keeps everything in Redis: a registration
answers after its write, a delivery is read from Redis and acknowledged there. A floor does exactly that
much with relay's own batching (:class:`relay.store.batched.BatchedScript`) and nothing else: no checks,
no sealing, no signing, no records, no metrics, no logs. So relay's cost beyond its floor is relay's own
code, and a floor's rate against its bare loop is the most any durable design of that shape reaches on the
machine.

* ``floor_app``: hello world plus one batched Redis write per POST (section 3).
* ``floor_loop("POST")``: the POST loop fed from Redis: claim up to 100 stored bodies at a time with one Lua
  call, POST each, acknowledge each with one batched Lua call, write-behind as relay's worker does (section 2).
* ``floor_loop("GET")``: the GET loop fed from Redis: claim stored monitor URLs the same way, GET each, write
  its answer back and make it due again with one batched Lua call (section 1).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from redis.asyncio import Redis

from relay.store.batched import BatchedScript
from relay.store.scripts import LuaScript

__all__ = ["OUTBOX", "floor_app", "floor_loop", "seed_outbox"]

#: one registration: keep the body under a new key for a day (nothing is checked)
_STORE = """--! uses lib/batch.lua
local function one(call)
  local key = 'bench:floor:' .. call.id
  redis.call('HSET', key, 'body', call.body)
  redis.call('EXPIRE', key, 86400)
  return {id = call.id}
end

return run_batch(one)
"""

#: the stored deliveries: a due set of ids, each id's body in a hash of its own
OUTBOX = "bench:floor:due"
_EVENT = "bench:floor:event:"

#: take up to ARGV[1] due ids and read their bodies: {id, body, id, body, ...}
_CLAIM = LuaScript.from_text(
    "floor_claim.lua",
    """
local taken = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local out = {}
for i = 1, #taken, 2 do
  out[#out + 1] = taken[i]
  out[#out + 1] = redis.call('HGET', ARGV[2] .. taken[i], 'body')
end
return out
""",
)

#: one delivery acknowledged: the event is gone, the count of delivered ones grows
_ACK = """--! uses lib/batch.lua
local function one(call)
  redis.call('DEL', BATCH.events .. call.id)
  return {acks = redis.call('HINCRBY', 'bench:floor:acks', 'delivered', 1)}
end

return run_batch(one)
"""

#: one poll written: the monitor's answer kept beside its URL, the monitor due again
_POLLED = """--! uses lib/batch.lua
local function one(call)
  redis.call('HSET', BATCH.events .. call.id, 'answer', call.answer)
  redis.call('ZADD', BATCH.due, call.due, call.id)
  return {acks = redis.call('HINCRBY', 'bench:floor:acks', 'polled', 1)}
end

return run_batch(one)
"""

CLAIM_BATCH = 100


def floor_app(redis_url: str) -> web.Application:
    """Read and parse the JSON body, store it with one batched Lua call (as ``POST /v1/jobs`` does), answer
    201 with JSON."""
    app = web.Application()
    redis = Redis.from_url(redis_url, decode_responses=True)
    script = BatchedScript(redis, LuaScript.from_source("floor_store.lua", _STORE), shared={})

    async def handle(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        job_id = os.urandom(16).hex()
        stored = await script({"id": job_id, "body": orjson.dumps(body).decode()})
        return web.json_response({"id": stored["id"], "status": "notStarted"}, status=201)

    async def close(_: web.Application) -> None:
        await redis.aclose()

    app.router.add_post("/{tail:.*}", handle)
    app.on_cleanup.append(close)
    return app


async def seed_outbox(redis: Redis, payloads: list[str]) -> None:
    """Store ``payloads`` (bodies to POST, or URLs to GET) as due work for :func:`floor_loop`."""
    async with redis.pipeline(transaction=False) as pipe:
        for i, body in enumerate(payloads):
            pipe.hset(f"{_EVENT}{i}", "body", body)
            pipe.zadd(OUTBOX, {str(i): i})
        await pipe.execute()


def _headers(method: str) -> dict[str, str]:
    """A POST carries Standard-Webhooks-sized headers (as the bare POST loop's); a GET asks for JSON."""
    if method != "POST":
        return {"Accept": "application/json"}
    return {
        "Content-Type": "application/json",
        "webhook-id": "msg_" + "0" * 32,
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1," + "A" * 44,
    }


def _writes(method: str, redis: Redis) -> BatchedScript:
    """POST: the ack (the call's ``id``); GET: the answer written back (``id``, ``answer``, ``due``)."""
    if method == "POST":
        return BatchedScript(redis, LuaScript.from_source("floor_ack.lua", _ACK), shared={"events": _EVENT})
    return BatchedScript(
        redis, LuaScript.from_source("floor_polled.lua", _POLLED), shared={"events": _EVENT, "due": OUTBOX}
    )


async def floor_loop(
    method: str, redis_url: str, concurrency: int, *, url: str = "", duration: float = 0.0
) -> dict[str, Any]:
    """Work through the stored payloads, ``concurrency`` at once, writes handed over without waiting.

    ``POST``: each payload is a body for ``url``, sent once and acknowledged (deleted); the loop ends when none
    is left. ``GET``: each payload is a URL, polled, its answer written back and due again at once; the loop
    ends after ``duration`` seconds."""
    headers = _headers(method)
    redis = Redis.from_url(redis_url, decode_responses=True)
    write = _writes(method, redis)
    queue: deque[tuple[str, str]] = deque()
    claiming = asyncio.Lock()
    end = time.monotonic() + duration
    finished = False
    ok = errors = 0

    async def next_payload() -> tuple[str, str] | None:
        nonlocal finished
        while not queue:
            if finished or (method == "GET" and time.monotonic() >= end):
                return None
            async with claiming:  # one claim at a time; the others wait for what it brings
                if queue or finished:
                    continue
                raw = await _CLAIM.run(redis, [OUTBOX], [CLAIM_BATCH, _EVENT])
                queue.extend(zip(raw[0::2], raw[1::2], strict=True))
                if not raw and method == "GET":
                    await asyncio.sleep(0.001)  # all polled and not yet written back
                finished = not raw and method == "POST"
        return queue.popleft()

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal ok, errors
            while (taken := await next_payload()) is not None:
                item, payload = taken
                target, data = (url, payload.encode()) if method == "POST" else (payload, None)
                try:
                    async with session.request(method, target, data=data, headers=headers) as resp:
                        answer = await resp.read()
                        done = 200 <= resp.status < 300
                except aiohttp.ClientError:
                    done = False
                if not done:
                    errors += 1
                    continue
                ok += 1
                # written behind, as relay's acks and poll writes are
                write.submit({"id": item, "answer": answer.decode(), "due": int(time.time() * 1000)})

        await asyncio.gather(*(one() for _ in range(concurrency)))
    await write.drain()
    acks = await redis.hgetall("bench:floor:acks")
    await redis.aclose()
    return {"ok": ok, "errors": errors, "acked": int(acks.get("delivered" if method == "POST" else "polled", 0))}
