"""One clock for a process: Redis' (``TIME``), the clock leases and due times already use.

A process's own clock may be off: a receiver checks ``webhook-timestamp`` against its clock (Standard
Webhooks refuses more than 5 minutes off), a JWT's ``exp`` and an authorization wait are compared with now, a
``Retry-After`` HTTP-date counts from now, an event a process builds itself (a parked job's ``job.failed``, the
``job.completed`` of an action that finished at once) carries now. So a worker, and ``relay serve``, measures
how far Redis' clock is from its own when it starts and every :data:`EVERY` seconds after (half the round trip
is the error bound), and its ``now()`` is its own clock plus that offset. An offset over :data:`MAX_OFFSET` is
logged as an error (relay still uses Redis' time, but the machine's clock wants fixing: its logs and anything
else on it are off) and shown by the ``relay_clock_offset_seconds`` gauge.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from redis.asyncio import Redis

from relay import metrics

__all__ = ["EVERY", "MAX_OFFSET", "RedisClock"]

log = structlog.stdlib.get_logger("relay.clock")

#: seconds between two measures of the offset
EVERY = 30.0
#: an offset (seconds) over which the worker's clock is reported as wrong
MAX_OFFSET = 300.0


class RedisClock:
    def __init__(self) -> None:
        self.offset = 0.0  # Redis' time minus this process's (seconds)
        self._task: asyncio.Task[None] | None = None
        self._reported = False

    def now(self) -> float:
        """Seconds since the epoch by Redis' clock."""
        return time.time() + self.offset

    async def measure(self, redis: Redis) -> float:
        """Redis' time minus this process's, from one TIME (taken at the middle of its round trip)."""
        before = time.time()
        seconds, micros = await redis.time()
        after = time.time()
        offset = float(seconds) + float(micros) / 1e6 - (before + after) / 2
        self._set(offset)
        return offset

    def _set(self, offset: float) -> None:
        self.offset = offset
        metrics.CLOCK_OFFSET.set(offset)
        if abs(offset) > MAX_OFFSET and not self._reported:
            log.error(
                "this machine's clock is off from Redis'; relay uses Redis' time, but fix the clock (NTP)",
                offset_s=round(offset, 1),
                bound_s=MAX_OFFSET,
            )
            self._reported = True
        elif abs(offset) <= MAX_OFFSET and self._reported:
            log.warning("this machine's clock agrees with Redis' again", offset_s=round(offset, 1))
            self._reported = False

    def start(self, redis: Redis, every: float = EVERY, *, at_once: bool = False) -> None:
        """Measure every ``every`` seconds in the background, the first time at once with ``at_once`` (a process
        that must not wait for Redis to start: until then its offset is 0)."""
        self._task = asyncio.create_task(self._run(redis, every, at_once), name="relay-clock")

    async def _run(self, redis: Redis, every: float, at_once: bool) -> None:
        if not at_once:
            await asyncio.sleep(every)
        while True:
            with contextlib.suppress(Exception):  # Redis away: the last offset stands (the claims say the rest)
                await self.measure(redis)
            await asyncio.sleep(every)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
