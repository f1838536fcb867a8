"""Lua scripts called by many tasks at once, sent to Redis as one call per event-loop iteration.

A batched script (``relay/store/lua/*.lua``) defines ``local function one(call)``, which handles one call (``call``
is a Lua table with named fields) and answers a record, and ends with ``return run_batch(one)`` (``lib/batch.lua``):
``ARGV[1]`` is the record every call shares (``BATCH`` in Lua), the rest one JSON record per call; the answers come
back as one JSON list. Every call made during one iteration of the event loop goes to Redis as a single EVALSHA.
Under load that is one round trip, one command to encode and one script run for dozens of calls; when idle a call
costs what a lone EVALSHA did. At most ``max_inflight`` calls of a script are at Redis at once: what comes in
meanwhile waits for one to return and goes with the next (group commit), so batches grow with the load instead of
with a timer. One call failing in Lua fails only that call. A batch holds at most ``max_batch`` calls and
``max_weight`` of their weight (a poll's write weighs its job changes), so that no batch holds Redis long, however
much one call carries.

``submit`` hands a call over without waiting for it (write-behind): the worker's hot paths move on to
their next HTTP request while the write joins the next batch, and ``backlog`` tells them when to wait
after all. What follows a call (``landed``) is called with its future as soon as the batch has set it, in the
same turn of the event loop (a done callback would wait for the next: ~3x the cost of the call itself, measured
per delivery). ``drain`` waits until every call handed over has been answered (a worker's shutdown).

On a Redis Cluster each call names its bucket (:class:`relay.store.keys.Keyspace`): a batch's calls are grouped by
bucket, one EVALSHA per bucket declaring the bucket's anchor, all sent as one pipeline (one round trip per node). On
one Redis every call is in bucket 0 and a batch is one EVALSHA, as ever.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis

from relay.store.keys import SINGLE, Keyspace
from relay.store.refusals import script_error
from relay.store.scripts import LuaScript, encode_call, run_many

__all__ = ["BatchedScript"]

#: what lib/batch.lua answers for a call that failed in Lua: {relay_error = why}
_ERROR = "relay_error"

log = structlog.stdlib.get_logger("relay.store")

#: one call handed over: (its JSON, its future, its bucket, what follows its answer or None)
_Pending = tuple[bytes, asyncio.Future[Any], int, Callable[[asyncio.Future[Any]], None] | None]


class BatchedScript:
    def __init__(
        self,
        redis: Redis,
        script: LuaScript,
        *,
        shared: Mapping[str, Any],
        answer: Callable[[dict[str, Any]], Any] | None = None,
        max_batch: int = 500,
        max_weight: int = 500,
        max_inflight: int = 2,
        keyspace: Keyspace = SINGLE,
    ) -> None:
        """``shared``: the record every call of the script shares (``BATCH``); ``answer``: what a call's answer (a
        record) is made into for its caller (the record itself without one)."""
        self.script = script
        self.redis = redis
        self.keyspace = keyspace
        self.shared = encode_call(shared)
        self.answer = answer
        self.max_batch = max_batch
        self.max_weight = max_weight
        self.max_inflight = max_inflight
        self._inflight = 0
        self._pending: list[_Pending] = []
        self._weights: list[int] = []  # of the pending calls, in their order
        self._pending_weight = 0
        self.backlog = 0  # calls handed over and not yet answered
        self._scheduled = False
        self._flushing: set[asyncio.Task[None]] = set()

    async def __call__(self, call: Any, bucket: int = 0) -> Any:
        """Run one call (a dataclass or dict: the script's ``call`` table); its answer, or its Lua error raised."""
        return await self.submit(call, bucket=bucket)

    def submit(
        self,
        call: Any,
        weight: int = 1,
        bucket: int = 0,
        landed: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> asyncio.Future[Any]:
        """Hand one call over; the future gets its answer (or its Lua error) once its batch returns. ``weight``:
        how much work the call is, in the script's own unit (a batch of one call may be heavier than the most);
        ``bucket``: the call's (a cluster's; 0 on one Redis); ``landed``: called with the future once it is set
        (answered, failed or its batch cancelled), before the batch's task goes on; what it raises is logged."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((encode_call(call), future, bucket, landed))
        self._weights.append(weight)
        self._pending_weight += weight
        self.backlog += 1
        if not self._scheduled and self._inflight < self.max_inflight:
            self._scheduled = True
            loop.call_soon(self._flush_soon)
        return future

    async def drain(self) -> None:
        """Until every call handed over so far has been answered (or failed)."""
        while self._pending or self._flushing or self._scheduled:
            if self._flushing:
                await asyncio.wait(set(self._flushing))
            else:
                await asyncio.sleep(0)

    def _flush_soon(self) -> None:
        self._scheduled = False
        while self._pending and self._inflight < self.max_inflight:
            size = self._batch_size()
            batch, self._pending = self._pending[:size], self._pending[size:]
            self._pending_weight -= sum(self._weights[:size])
            del self._weights[:size]
            self._inflight += 1
            task = asyncio.create_task(self._flush(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flush_done)

    def _batch_size(self) -> int:
        """How many of the pending calls the next batch takes: at least one, then up to both bounds."""
        if self._pending_weight <= self.max_weight:  # the usual case: every call is light
            return min(len(self._pending), self.max_batch)
        size, weight = 1, self._weights[0]
        for w in itertools.islice(self._weights, 1, self.max_batch):
            weight += w
            if weight > self.max_weight:
                break
            size += 1
        return size

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        self._inflight -= 1
        if self._pending and not self._scheduled:  # what queued meanwhile goes now, as one call
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            if self.keyspace.clustered:
                results = await self._run_buckets(batch)
            else:
                results = await self._run([self.shared, *(one[0] for one in batch)])
        except BaseException as exc:
            self.backlog -= len(batch)
            for _, future, _, landed in batch:
                if not future.done():
                    future.set_exception(exc)
                    if landed is not None:
                        _follow(landed, future)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self.backlog -= len(batch)
        answer = self.answer
        for (_, future, _, landed), result in zip(batch, results, strict=True):
            if future.done():
                continue
            _settle(future, result, answer)
            if landed is not None:
                _follow(landed, future)

    async def _run(self, argv: list[Any]) -> list[Any]:
        results: list[Any] = orjson.loads(await self.script.run(self.redis, [self.keyspace.anchor(0)], argv))
        return results

    async def _run_buckets(self, batch: list[_Pending]) -> list[Any]:
        """A cluster's batch: one EVALSHA per bucket, in one pipeline; each call's answer, or its bucket's error."""
        groups: dict[int, list[int]] = {}
        for i, one in enumerate(batch):
            groups.setdefault(one[2], []).append(i)
        runs = [
            (self.keyspace.anchor(bucket), [self.shared, *(batch[i][0] for i in members)])
            for bucket, members in groups.items()
        ]
        results: list[Any] = [None] * len(batch)
        for members, raw in zip(groups.values(), await run_many(self.redis, self.script, runs), strict=True):
            answers = [raw] * len(members) if isinstance(raw, Exception) else orjson.loads(raw)
            for i, one in zip(members, answers, strict=True):
                results[i] = one
        return results


def _settle(future: asyncio.Future[Any], result: Any, answer: Callable[[dict[str, Any]], Any] | None) -> None:
    """One call's future set from its answer in the batch's."""
    if isinstance(result, Exception):  # its bucket's script failed as a whole (a cluster refusing it)
        future.set_exception(result)
        return
    failed = result.get(_ERROR) if type(result) is dict else None
    if failed is not None:
        future.set_exception(script_error(str(failed)))  # a refusal (OOM...) keeps its kind
        return
    try:
        future.set_result(result if answer is None else answer(result))
    except Exception as exc:  # an answer that does not read fails its call alone
        future.set_exception(exc)


def _follow(landed: Callable[[asyncio.Future[Any]], None], future: asyncio.Future[Any]) -> None:
    """What follows one call's answer; never lets it break the batch (the other calls' answers still go out)."""
    try:
        landed(future)
    except Exception:
        log.exception("after a batched call")
