"""Idle claim loops sleep until their schedule's earliest member comes due, or until woken.

A schedule publishes on its wake channel (``keys.sched_wake``) whenever a member comes due before any other
did (a new job, a new event, a job woken for authorization: ``relay/store/lua/lib/lanes.lua``). One
subscription per worker process sets the loops' events. If the subscription breaks (Redis restarting), the
loops are woken at once and every time it is made again, so nothing waits longer than a loop's longest sleep.

On a Redis Cluster (redis-py 5.2's asyncio cluster client has no pub/sub) the subscription is a plain client to
one node: a ``PUBLISH`` on any node reaches the subscribers of every node. When that node fails, the next
subscription is made to another (:meth:`relay.store.cluster_client.RelayCluster.subscriber`).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from redis.asyncio import Redis

from relay.store.cluster_client import RelayCluster

__all__ = ["Waker"]

log = structlog.stdlib.get_logger("relay.worker")


class Waker:
    def __init__(self, redis: Redis, events: dict[str, asyncio.Event]) -> None:
        """``events``: wake channel -> the event of the loop claiming that schedule."""
        self.redis = redis
        self.events = events
        self._task: asyncio.Task[None] | None = None
        #: on a cluster: the node subscribed to (``host:port``), or the last one that failed
        self.node: str | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relay-waker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _wake_all(self) -> None:
        for event in self.events.values():
            event.set()

    async def _run(self) -> None:
        while True:
            try:
                await self._subscribe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the loops poll on their own meanwhile
                log.warning("wake subscription lost", error=type(exc).__name__, node=self.node)
                self._wake_all()
                await asyncio.sleep(1.0)

    async def _subscribe(self) -> None:
        if not isinstance(self.redis, RelayCluster):
            await self._listen(self.redis)
            return
        client, self.node = await self.redis.subscriber(avoid=self.node)
        try:
            await self._listen(client)
        finally:
            await client.aclose()

    async def _listen(self, redis: Redis) -> None:
        async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(*self.events)
            self._wake_all()  # what was published while not subscribed is looked at now
            async for message in pubsub.listen():
                event = self.events.get(message.get("channel") or "")
                if event is not None:
                    event.set()
