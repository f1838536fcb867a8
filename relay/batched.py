"""Lua scripts called by many tasks at once, sent to Redis as one call per event-loop iteration.

A :class:`BatchedScript` body defines ``local function one(a)``, which handles one call: ``a`` is
the call's arguments (a Lua table, ``a[1]`` first; dicts and lists arrive as tables). Every call
made during one iteration of the event loop goes to Redis as a single EVALSHA: the shared
arguments first, then one JSON array per call (one argument to encode, one ``cjson.decode``).
Under load that is one round trip, one command to encode and one script run for dozens of calls;
when idle a call costs what a lone EVALSHA did. At most ``max_inflight`` calls of a script
are at Redis at once: what comes in meanwhile waits for one to return and goes with the next (group
commit), so batches grow with the load instead of with a timer. One call failing in Lua fails only
that call.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from relay import jsonfast
from relay.scheduler import NOW_MS

__all__ = ["BatchedScript"]

_ERROR = "__relay_error__"

# runs one() for every call in ARGV, each under pcall: a Lua error is that call's answer alone. Except
# READONLY (this Redis has become a replica, and no call can write): the whole script fails with it, so
# that a Sentinel client drops the connection and asks the Sentinels for the new primary.
_DRIVER = """
local __out = {}
for __i = __FIRST__, #ARGV do
  local __ok, __r = pcall(function() return one(cjson.decode(ARGV[__i])) end)
  if __ok then
    __out[#__out + 1] = __r
  else
    local __err = type(__r) == 'table' and tostring(__r.err) or tostring(__r)
    if string.find(__err, 'READONLY', 1, true) then
      return redis.error_reply("READONLY You can't write against a read only replica.")
    end
    __out[#__out + 1] = {'__ERROR__', __err}
  end
end
return __out
"""


class BatchedScript:
    def __init__(
        self,
        redis: Redis,
        body: str,
        *,
        keys: Sequence[str],
        shared: Sequence[Any],
        width: int,
        max_batch: int = 500,
        max_inflight: int = 2,
    ) -> None:
        """``body``: Lua defining ``one(a)``; ``NOW_MS`` (``now``) and ``shared`` (``ARGV[1..]``) come first.

        ``width``: how many arguments a call takes (checked).
        """
        driver = _DRIVER.replace("__FIRST__", str(len(shared) + 1))
        self.script = NOW_MS + body + driver.replace("__ERROR__", _ERROR)
        self.sha = hashlib.sha1(self.script.encode()).hexdigest()  # noqa: S324 - the name Redis gives a script
        self.redis = redis
        self.keys = list(keys)
        self.shared = [str(a) for a in shared]
        self.width = width
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._inflight = 0
        self._pending: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._scheduled = False
        self._flushing: set[asyncio.Task[None]] = set()

    async def __call__(self, *args: Any) -> Any:
        if len(args) != self.width:
            raise TypeError(f"expected {self.width} arguments, got {len(args)}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((jsonfast.dumps(args), future))
        if not self._scheduled and self._inflight < self.max_inflight:
            self._scheduled = True
            loop.call_soon(self._flush_soon)
        return await future

    def _flush_soon(self) -> None:
        self._scheduled = False
        while self._pending and self._inflight < self.max_inflight:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self._inflight += 1
            task = asyncio.create_task(self._flush(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        self._inflight -= 1
        if self._pending and not self._scheduled:  # what queued meanwhile goes now, as one call
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    async def _flush(self, batch: list[tuple[bytes, asyncio.Future[Any]]]) -> None:
        argv: list[Any] = [*self.shared, *(packed for packed, _ in batch)]
        try:
            results = await self._run(argv)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, list) and len(result) == 2 and result[0] == _ERROR:
                future.set_exception(ResponseError(f"relay script failed: {result[1]}"))
            else:
                future.set_result(result)

    async def _run(self, argv: list[Any]) -> list[Any]:
        try:
            return await self.redis.evalsha(self.sha, len(self.keys), *self.keys, *argv)  # type: ignore[no-any-return,misc]
        except NoScriptError:  # a restarted Redis forgets its scripts
            await self.redis.script_load(self.script)
            return await self.redis.evalsha(self.sha, len(self.keys), *self.keys, *argv)  # type: ignore[no-any-return,misc]
