"""A claim loop over one :class:`relay.store.scheduler.Scheduler`, with bounded concurrency.

Each worker process runs one loop for monitors and one for deliveries. Claims come in batches and
carry their member's state (the scheduler's loader read it in the same step); ``concurrency``
long-lived runner tasks take them one at a time, as a bare ``aiohttp`` loop would, so no task is
made per claim. A member's lease keeps other workers away while it is handled; a crash leaves the
lease to run out, and the member comes due again for whichever worker claims it next.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable

import structlog

from relay.store.refusals import SPELLS
from relay.store.scheduler import Claim, Scheduler
from workers.backstop import Backstop

__all__ = ["ClaimLoop", "Handler"]

log = structlog.stdlib.get_logger("relay.worker")

#: handles one claim; its failures are logged and its lease makes the member come due again
Handler = Callable[[Claim], Awaitable[None]]
#: the pause after a failed claim, doubled while they keep failing, up to the second figure (seconds)
CLAIM_BACKOFF = (1.0, 8.0)


class ClaimLoop:
    def __init__(
        self,
        name: str,
        scheduler: Scheduler,
        handle: Handler,
        *,
        concurrency: int,
        lease: float,
        batch: int = 100,
        idle: float = 0.1,
        max_idle: float = 10.0,
        wake: asyncio.Event | None = None,
        backstop: Backstop | None = None,
    ) -> None:
        """``idle``: the shortest pause after a claim that found less than it asked for while work is in
        flight; with nothing in flight the loop sleeps until the earliest member comes due (at most
        ``max_idle``), or until ``wake`` is set (workers/waker.py). ``backstop``: counts a member's
        unexpected failures and parks it after a few in a row (workers/backstop.py)."""
        self.name = name
        self.scheduler = scheduler
        self.handle = handle
        self.concurrency = concurrency
        self.lease = lease
        self.batch = batch
        self.idle = idle
        self.max_idle = max_idle
        self.wake = wake or asyncio.Event()
        self.backstop = backstop
        self._pause_until = 0.0  # monotonic: when the current pause ends
        scheduler.on_handed_back = self._handed_back
        self._busy = 0  # claims taken and not yet handled (queued or running)
        # under load, claim once a tenth of the slots are free rather than one slot at a time:
        # fewer, larger claims (one round trip each) for the same work
        self._min_claim = max(1, min(batch, concurrency // 10))
        # claims held ready beyond the runners: a runner that finishes takes the next one at once instead of
        # waiting out the claim's round trip (one claim's worth; each waits in the queue a moment, leased)
        self._capacity = concurrency + self._min_claim
        self._slot_freed = asyncio.Event()
        self._queue: deque[Claim] = deque()
        self._parked: list[asyncio.Future[None]] = []  # runners waiting for a claim
        self._runners: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._claims_failed = 0  # claims failed in a row
        self._failing_since = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"relay-{self.name}-loop")
        for i in range(self.concurrency):
            runner = asyncio.create_task(self._runner(), name=f"relay-{self.name}-{i}")
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            free = self._capacity - self._busy
            if free < self._min_claim:  # wait a moment for more free slots; then claim what there is
                self._slot_freed.clear()
                await self._wait(self._slot_freed, 0.05)
                free = self._capacity - self._busy
                if free <= 0:
                    continue
            if self.wake.is_set():  # a cluster's claim looks at every bucket again first (relay/store/scheduler.py)
                self.scheduler.woken()
            self.wake.clear()  # a wake-up that comes while claiming is not lost: the pause below ends at once
            try:
                found = await self.scheduler.claim_batch(min(free, self.batch), self.lease)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down, restarting or refusing: back off and try again, never die
                await self._wait(self._stopping, self._claim_failed(exc))
                continue
            if self._claims_failed:
                self._claims_resumed()
            claims = found.claims
            if claims:
                self._busy += len(claims)
                self._queue.extend(claims)
                for _ in range(min(len(claims), len(self._parked))):
                    parked = self._parked.pop()
                    if not parked.done():
                        parked.set_result(None)
            if len(claims) < min(free, self.batch):
                await self._pause(self.scheduler.next_due_in(found))

    def _claim_failed(self, exc: Exception) -> float:
        """Count a failed claim, logged once per spell of them (a refusal by Redis: once per spell of the
        process, see relay/store/refusals.py); the seconds to wait before the next."""
        if not self._claims_failed:
            self._failing_since = time.monotonic()
        self._claims_failed += 1
        if SPELLS.refused(exc, f"{self.name} claim") is None and self._claims_failed == 1:
            log.warning("claim failed; retrying with backoff", loop=self.name, error=f"{type(exc).__name__}: {exc}")
        low, high = CLAIM_BACKOFF
        return min(high, low * 2.0 ** min(self._claims_failed - 1, 10))

    def _claims_resumed(self) -> None:
        SPELLS.accepted()  # a claim writes (its leases): a spell of Redis refusals is over
        log.info(
            "claims resumed",
            loop=self.name,
            failed=self._claims_failed,
            for_s=round(time.monotonic() - self._failing_since, 1),
        )
        self._claims_failed = 0

    async def _runner(self) -> None:
        structlog.contextvars.bind_contextvars(loop=self.name)
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                parked: asyncio.Future[None] = loop.create_future()
                self._parked.append(parked)
                await parked
                continue
            claim = self._queue.popleft()
            try:
                await self.handle(claim)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad member must never take the worker down, nor fail forever
                await self._failed(claim, exc)
            finally:
                self._busy -= 1
                if self._capacity - self._busy >= self._min_claim or not self._busy:
                    self._slot_freed.set()

    async def _failed(self, claim: Claim, exc: Exception) -> None:
        """A member's handling raised: counted against it (parked at the last strike, else handed back after a
        short pause); without a backstop, logged and left to its lease."""
        if self.backstop is None:
            if SPELLS.refused(exc, f"{self.name} member") is None:  # a refusal is logged once per spell
                log.exception("member failed", loop=self.name, member=claim.member[:12])
            return
        try:
            await self.backstop.failed(claim.member, claim, exc, loop=self.name)
        except Exception as again:  # never let the backstop take the runner down; the lease hands the member back
            log.warning("member failed", loop=self.name, member=claim.member[:12], error=type(again).__name__)

    async def _pause(self, next_due_in: float | None) -> None:
        """Until the earliest member comes due (or ``max_idle``), woken earlier by a wake-up or a stop."""
        floor = self.idle if self._busy else 0.0
        seconds = self.max_idle if next_due_in is None else min(self.max_idle, max(floor, next_due_in))
        # a short pause (work in flight) is not cut shorter: claims stay batched under load
        self._pause_until = time.monotonic() + seconds if seconds > self.idle else 0.0
        await self._wait(self.wake, seconds)  # stopping sets it too
        self._pause_until = 0.0

    def _handed_back(self, due: float) -> None:
        """A member this process handed back comes due before the pause ends: end it then."""
        if due < self._pause_until:
            self._pause_until = due  # one timer per earlier time, not one per hand-back
            loop = asyncio.get_running_loop()
            loop.call_at(loop.time() + max(0.0, due - time.monotonic()), self.wake.set)

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` is set or ``seconds`` pass (no task made, unlike ``wait_for``)."""
        if event.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()

    @property
    def in_flight(self) -> int:
        """Claims taken and not yet handled."""
        return self._busy

    def begin_stop(self) -> None:
        """Claim nothing more; work in flight carries on."""
        self._stopping.set()
        self.wake.set()

    async def stop(self, grace: float) -> None:
        """Stop claiming, give claimed work ``grace`` seconds, then cancel it (its leases hand it back)."""
        self.begin_stop()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=2.0)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        deadline = asyncio.get_running_loop().time() + grace
        while self._busy > 0 and (left := deadline - asyncio.get_running_loop().time()) > 0:
            self._slot_freed.clear()
            await self._wait(self._slot_freed, min(left, 0.5))
        for runner in self._runners:
            runner.cancel()
        if self._runners:
            await asyncio.wait(set(self._runners))
