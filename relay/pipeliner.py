"""Shared pipelines for script calls made by many tasks at once.

Every call made during one event-loop iteration goes to Redis in the same pipeline: one round trip
and one buffer write for the lot, instead of one per call. Under load that is most of the saving of
batching without any caller having to batch; when idle a call costs what it did before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

__all__ = ["Pipeliner"]

_Pending = tuple[AsyncScript, list[str], list[Any], "asyncio.Future[Any]"]


class Pipeliner:
    def __init__(self, redis: Redis, max_batch: int = 500) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self._pending: list[_Pending] = []
        self._scheduled = False
        self._flushing: set[asyncio.Task[None]] = set()

    async def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush_soon)
        return await future

    def _flush_soon(self) -> None:
        self._scheduled = False
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            task = asyncio.create_task(self._flush(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    await script(keys=keys, args=args, client=pipe)
                results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
