"""The arq worker: DriveItem resolution as arq jobs, plus the monitor and delivery claim loops.

``relay worker`` runs :func:`create_worker`. ``WorkerSettings`` is there for ``arq workers.main.WorkerSettings``
(settings then come from the environment at start-up, never at import).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from functools import partial
from signal import Signals
from typing import Any, ClassVar

import structlog
from arq import func
from arq.worker import Worker
from redis.asyncio import Redis

from relay import metrics
from relay.config.redis_url import is_sentinel_url, redis_where
from relay.config.settings import Settings
from relay.config.tenants import Signing
from relay.core.crypto import Vault
from relay.core.retry import ARQ_MAX_TRIES
from relay.credentials.broker import CredentialBroker
from relay.outbound.client import create_session
from relay.store import keys
from relay.store.connections import arq_sentinel_pool, arq_settings
from relay.store.open import open_store
from relay.store.refusals import SPELLS
from workers.backstop import Backstop, park_delivery, park_poll, park_resolution
from workers.context import Deps
from workers.deliver import deliver_claimed
from workers.lifecycle import Lifecycle, quiet_arq
from workers.loops import ClaimLoop
from workers.poll import poll_claimed
from workers.resolve import RESOLVE_TASK, resolve_item
from workers.waker import Waker

__all__ = ["WorkerSettings", "create_worker", "job_deserializer", "job_serializer"]

log = structlog.stdlib.get_logger("relay.worker")

#: seconds from SIGTERM until in-flight polls and deliveries are cut off (their leases hand them on);
#: arq's job_completion_wait runs in the same window. Keep both under the pod's grace period (30 s).
SHUTDOWN_BUDGET = 25.0


def health_check_key(hostname: str | None = None) -> str:
    """arq's health key, one per worker host (a pod's name), so a liveness probe sees this worker alone."""
    return f"{keys.ARQ_QUEUE}:health-check:{hostname or socket.gethostname()}"


class RelayWorker(Worker):
    """An arq worker that also stops claiming monitors and deliveries the moment a signal arrives, and beats
    :data:`relay.metrics.WORKER_HEARTBEAT` each time its loop goes round (the worker's ``/healthz``)."""

    async def heart_beat(self) -> None:
        try:
            await super().heart_beat()
        except Exception as exc:  # arq's health key is a write: a full Redis must not end the worker (it did)
            if SPELLS.refused(exc, "arq health check") is None:
                raise
        metrics.WORKER_HEARTBEAT.beat()

    def handle_sig_wait_for_completion(self, signum: Signals) -> None:
        _begin_stop(self.ctx, Signals(signum).name)
        super().handle_sig_wait_for_completion(signum)

    def handle_sig(self, signum: Signals) -> None:
        # without its own signal handlers the worker is closed by its owner (relay dev), through this SIGUSR1
        _begin_stop(self.ctx, Signals(signum).name if self._handle_signals else None)
        super().handle_sig(signum)

    async def close(self) -> None:
        """arq's, except that the jobs it cancels are waited for whatever they end with. arq gathers them: a job
        cancelled in arq's own Redis writes (its start or its finish, not its function) ended close() with its
        CancelledError before the shutdown ran, and the claim loops, clock and waker went on (tests/test_shutdown.py).
        The shutdown runs even when the health key cannot be deleted (Redis gone)."""
        if not self._handle_signals:
            self.handle_sig(Signals.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        try:
            await self.pool.delete(self.health_check_key)
        finally:
            if self.on_shutdown:
                await self.on_shutdown(self.ctx)
            await self.pool.close(close_connection_pool=True)
            self._pool = None


def _begin_stop(ctx: dict[str, Any], signal: str | None = None) -> None:
    lifecycle: Lifecycle | None = ctx.get("lifecycle")
    if lifecycle is not None:
        lifecycle.stopping(signal, sum(loop.in_flight for loop in ctx.get("loops", [])), SHUTDOWN_BUDGET)
    if "stop_deadline" not in ctx:
        ctx["stop_deadline"] = time.monotonic() + SHUTDOWN_BUDGET
    for loop in ctx.get("loops", []):
        loop.begin_stop()


def job_serializer(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def job_deserializer(raw: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(raw)
    return result


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or Settings.from_env()
    settings.check_sealing()
    ctx["settings"] = settings
    store = open_store(settings)
    redis = store.redis
    session = create_session(settings.internal_hosts, limit=settings.poll_concurrency + settings.delivery_concurrency)
    vault = Vault(settings.vault_keys)
    credentials = CredentialBroker(settings.credentials, timeout=settings.request_timeout)
    deps = Deps(
        settings=settings,
        store=store,
        session=session,
        arq=ctx["redis"],
        vault=vault,
        credentials=credentials,
        signing=Signing.of(settings),
        rng=random.Random(),
    )
    ctx["deps"] = deps  # before the first await: what holds the worker may look at its deps at once
    try:
        await deps.clock.measure(redis)
    except Exception as exc:  # Redis not there yet: the claims wait for it; the clock is measured again soon
        log.warning("clock not measured against Redis' yet", error=type(exc).__name__)
    deps.clock.start(redis)
    lease, now = settings.lease, deps.clock.now
    deps.backstops.update(
        poll=Backstop(store, "poll", park_poll(store, now), scheduler=store.monitors, lease=lease),
        delivery=Backstop(store, "delivery", park_delivery(store, now), scheduler=store.deliveries, lease=lease),
        resolution=Backstop(store, "resolution", park_resolution(store, now), lease=lease),
    )
    loops = [
        ClaimLoop(
            "poll",
            store.monitors,
            partial(poll_claimed, deps),
            concurrency=settings.poll_concurrency,
            lease=lease,
            backstop=deps.backstops["poll"],
        ),
        ClaimLoop(
            "deliver",
            store.deliveries,
            partial(deliver_claimed, deps),
            concurrency=settings.delivery_concurrency,
            lease=lease,
            backstop=deps.backstops["delivery"],
        ),
    ]
    waker = Waker(redis, {keys.sched_wake(loop.scheduler.key): loop.wake for loop in loops})
    waker.start()
    for loop in loops:
        loop.start()
    lifecycle = Lifecycle(settings, redis_where(settings.effective_redis_url))
    ctx.update(deps=deps, loops=loops, own_redis=redis, waker=waker, lifecycle=lifecycle)
    lifecycle.running()
    started: asyncio.Event | None = ctx.get("started")
    if started is not None:  # relay dev waits for this before closing the worker (see relay/cli/dev.py)
        started.set()


async def shutdown(ctx: dict[str, Any]) -> None:
    _begin_stop(ctx)
    for loop in ctx.get("loops", []):
        await loop.stop(max(1.0, ctx["stop_deadline"] - time.monotonic()))
    waker: Waker | None = ctx.get("waker")
    if waker is not None:
        await waker.stop()
    deps: Deps | None = ctx.get("deps")
    if deps is not None:
        await deps.clock.stop()
        with contextlib.suppress(Exception):  # writes handed over by the runners land before Redis is closed
            await asyncio.wait_for(deps.store.drain(), timeout=max(1.0, ctx["stop_deadline"] - time.monotonic()))
        if deps.background:
            await asyncio.wait(set(deps.background), timeout=max(1.0, ctx["stop_deadline"] - time.monotonic()))
        await deps.session.close()
        await deps.credentials.close()
    redis: Redis | None = ctx.get("own_redis")
    if redis is not None:
        await redis.aclose()
    lifecycle: Lifecycle | None = ctx.get("lifecycle")
    if lifecycle is not None:
        lifecycle.stopped()


class WorkerSettings:
    functions: ClassVar[list[Any]] = [func(resolve_item, name=RESOLVE_TASK, max_tries=ARQ_MAX_TRIES, timeout=60)]
    on_startup = startup
    on_shutdown = shutdown
    queue_name = keys.ARQ_QUEUE
    max_jobs = 200
    queue_read_limit = 300
    # arq runs only retries of DriveItem requests (deferred 2 s and more) and rechecks: no need to ask Redis
    # for them 5 times a second, which was most of an idle worker's Redis calls
    poll_delay = 2.0
    keep_result = 0
    job_timeout = 60
    job_completion_wait = 25
    health_check_interval = 30
    job_serializer = staticmethod(job_serializer)
    job_deserializer = staticmethod(job_deserializer)


def worker_kwargs() -> dict[str, Any]:
    return {name: getattr(WorkerSettings, name) for name in dir(WorkerSettings) if not name.startswith("_")}


def _arq_redis(url: str) -> dict[str, Any]:
    """arq's Redis: settings for a plain URL (arq connects); for a Sentinel URL a pool made by relay,
    set up as arq's ``create_pool`` would (see :func:`relay.store.connections.arq_sentinel_pool`)."""
    if not is_sentinel_url(url):
        return {"redis_settings": arq_settings(url)}
    pool = arq_sentinel_pool(url)
    pool.job_serializer = job_serializer
    pool.job_deserializer = job_deserializer
    pool.default_queue_name = WorkerSettings.queue_name
    return {"redis_pool": pool}


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    """A worker; :class:`relay.config.settings.ConfigError` without a sealing key (RELAY_ENCRYPTION_KEY)."""
    settings.check_sealing()
    quiet_arq()
    kwargs = worker_kwargs()
    kwargs.update(_arq_redis(settings.arq_redis_url or settings.effective_redis_url))
    kwargs.update(ctx={"settings": settings}, health_check_key=health_check_key())
    kwargs.update(overrides)
    return RelayWorker(**kwargs)
