"""A claim loop over one :class:`relay.scheduler.Scheduler`, with bounded concurrency.

Each worker process runs one loop for monitors and one for deliveries. A member's lease keeps
other workers away while it is handled; a crash leaves the lease to run out, and the member
comes due again for whichever worker claims it next.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from relay.scheduler import Claim, Scheduler

__all__ = ["ClaimLoop"]

log = structlog.stdlib.get_logger("relay.worker")


class ClaimLoop:
    def __init__(
        self,
        name: str,
        scheduler: Scheduler,
        handle: Callable[[Claim], Awaitable[None]],
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
        self.handled = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"relay-{self.name}-loop")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                free = self.concurrency - len(self._inflight)
                if free <= 0:
                    await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                claims = await self.scheduler.claim(min(free, self.batch), self.lease)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down or restarting: wait and try again, never die
                log.warning("claim failed", loop=self.name, error=f"{type(exc).__name__}: {exc}")
                await self._sleep(1.0)
                continue
            for claim in claims:
                task = asyncio.create_task(self._guarded(claim))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if len(claims) < min(free, self.batch):
                await self._sleep(self.idle)

    async def _guarded(self, claim: Claim) -> None:
        structlog.contextvars.bind_contextvars(loop=self.name)
        try:
            await self.handle(claim)
            self.handled += 1
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad member must never take the worker down; its lease makes it retry
            log.exception("handler failed", loop=self.name, member=claim.member[:12])

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

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
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
