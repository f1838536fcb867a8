"""A claim loop over one :class:`relay.scheduler.Scheduler`, with bounded concurrency.

Each worker process runs one loop for monitors and one for deliveries. Claims come in batches, so
the handler can read their state from Redis in one round trip; each claimed member then counts
against the loop's concurrency until the handler releases it. A member's lease keeps other workers
away while it is handled; a crash leaves the lease to run out, and the member comes due again for
whichever worker claims it next.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from relay.scheduler import Claim, Scheduler

__all__ = ["BatchHandler", "ClaimLoop", "Release", "each"]

log = structlog.stdlib.get_logger("relay.worker")

#: called once per claimed member when its work is over (successful or not)
Release = Callable[[], None]
#: handles a batch of claims; must call ``release`` once per claim, and may return before the work is done
BatchHandler = Callable[[list[Claim], Release], Awaitable[None]]


class ClaimLoop:
    def __init__(
        self,
        name: str,
        scheduler: Scheduler,
        handle: BatchHandler,
        *,
        concurrency: int,
        lease: float,
        batch: int = 100,
        idle: float = 0.1,
    ) -> None:
        self.name = name
        self.scheduler = scheduler
        self.handle = handle
        self.concurrency = concurrency
        self.lease = lease
        self.batch = batch
        self.idle = idle
        self._busy = 0
        self._slot_freed = asyncio.Event()
        self._batches: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"relay-{self.name}-loop")

    def _release(self) -> None:
        self._busy -= 1
        self._slot_freed.set()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            free = self.concurrency - self._busy
            if free <= 0:
                self._slot_freed.clear()
                await self._wait(self._slot_freed, 1.0)
                continue
            try:
                claims = await self.scheduler.claim(min(free, self.batch), self.lease)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down or restarting: wait and try again, never die
                log.warning("claim failed", loop=self.name, error=f"{type(exc).__name__}: {exc}")
                await self._wait(self._stopping, 1.0)
                continue
            if claims:
                self._busy += len(claims)
                task = asyncio.create_task(self._guarded(claims))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
            if len(claims) < min(free, self.batch):
                await self._wait(self._stopping, self.idle)

    async def _guarded(self, claims: list[Claim]) -> None:
        structlog.contextvars.bind_contextvars(loop=self.name)
        released = 0

        def release() -> None:
            nonlocal released
            if released < len(claims):
                released += 1
                self._release()

        try:
            await self.handle(claims, release)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bad batch must never take the worker down; the leases make it retry
            log.exception("handler failed", loop=self.name, claims=len(claims))
        finally:
            while released < len(claims):
                release()

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    def begin_stop(self) -> None:
        """Claim nothing more; work in flight carries on."""
        self._stopping.set()

    async def stop(self, grace: float) -> None:
        """Stop claiming, give in-flight work ``grace`` seconds, then cancel it (its leases hand it back)."""
        self._stopping.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=2.0)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._batches:
            _, pending = await asyncio.wait(set(self._batches), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)


async def each(claims: list[Claim], release: Release, work: Callable[[int], Awaitable[None]]) -> None:
    """Run ``work(i)`` for every claim concurrently, releasing each claim as its work ends."""

    async def one(i: int) -> None:
        try:
            await work(i)
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad member must never take the batch down; its lease makes it retry
            log.exception("member failed", member=claims[i].member[:12])
        finally:
            release()

    await asyncio.gather(*(one(i) for i in range(len(claims))))
