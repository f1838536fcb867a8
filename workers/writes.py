"""Write-behind for the hot paths: a poll's write or a delivery's ack joins the next batch while the runner
that made it moves on to its next HTTP request.

The member stays leased until its write lands, so no other runner or worker takes it meanwhile; a worker
killed before the write lands leaves the lease to run out, as a worker killed mid-request always did (the
monitor is polled again; the event is sent again under the same ``webhook-id``). What follows the write
(counting events, logging, starting a resolution) runs when its answer comes back; when the answer is lost
(a connection cut mid-reply) what must follow is found again from the stored state at once (``unknown``).
When Redis falls behind (more than ``MAX_BACKLOG`` writes unanswered), the runner waits for its own write after all, so
the work in hand stays bounded.

The hot paths hand what follows over with the write itself (:func:`landing`, then :func:`behind`): the batch calls it
in the turn of the event loop that answered the write. :func:`after_write` attaches it to a write already handed over
(a done callback: one more turn of the loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog
from redis.exceptions import RedisError

from relay.store.jobs import Store
from relay.store.refusals import SPELLS

__all__ = ["MAX_BACKLOG", "after_write", "behind", "landing"]

log = structlog.stdlib.get_logger("relay.worker")

#: unanswered writes beyond which a runner waits for its own (two full batches of a batched script)
MAX_BACKLOG = 1000


def landing(
    then: Callable[[Any], None] | None,
    *,
    what: str,
    member: str,
    failed: Callable[[BaseException], None] | None = None,
    unknown: Callable[[], None] | None = None,
) -> Callable[[asyncio.Future[Any]], None]:
    """What follows a write, called with its future once it is set: ``then(answer)`` (if any) once it landed,
    ``failed(exc)`` (if any) when it failed.

    ``unknown()`` (if any) when no answer came back (a connection lost mid-reply): the write may have landed, so
    what follows it must be found again in the stored state (it reads Redis, and does nothing if it did not land).
    """
    return partial(_landed, then or _nothing, failed or _nothing, what, member, unknown or _none)


async def behind(store: Store, pending: asyncio.Future[Any]) -> None:
    """A write handed over with its :func:`landing`: waits for it here only when the store's backlog is long."""
    if store.write_backlog > MAX_BACKLOG:
        await asyncio.wait((pending,))


async def after_write(
    store: Store,
    pending: asyncio.Future[Any],
    then: Callable[[Any], None] | None,
    *,
    what: str,
    member: str,
    failed: Callable[[BaseException], None] | None = None,
    unknown: Callable[[], None] | None = None,
) -> None:
    """:func:`landing` attached to a write already handed over (run once ``pending`` is set); waits for it here
    only when the store's backlog is long."""
    landed = landing(then, what=what, member=member, failed=failed, unknown=unknown)
    if store.write_backlog > MAX_BACKLOG:
        await asyncio.wait((pending,))
        landed(pending)
        return
    pending.add_done_callback(landed)


def _nothing(_: object) -> None:
    return None


def _none() -> None:
    return None


def _landed(
    then: Callable[[Any], None],
    failed: Callable[[BaseException], None],
    what: str,
    member: str,
    unknown: Callable[[], None],
    pending: asyncio.Future[Any],
) -> None:
    if pending.cancelled():
        return
    exc = pending.exception()
    if exc is None:
        SPELLS.accepted()  # a write went through: a spell of Redis refusals may be over (a no-op without one)
        try:
            then(pending.result())
        except Exception:  # what follows a write must never break the loop that answered it
            log.exception(f"after {what}", member=member[:12])
        return
    # Redis went away mid-write, or refused it: the lease runs out and the member comes due again
    if SPELLS.refused(exc, what) is not None:  # a refusal (OOM...): counted, logged once per spell, no strike
        return
    log.warning(f"{what} not written", member=member[:12], error=f"{type(exc).__name__}: {exc}")
    failed(exc)  # a failure that comes back at every try is parked (workers/backstop.py)
    if isinstance(exc, ConnectionError | TimeoutError | RedisError):  # it may have landed all the same
        _safely(unknown, what, member)


def _safely(follow: Callable[[], None], what: str, member: str) -> None:
    try:
        follow()
    except Exception:  # what follows a write must never break the loop that answered it
        log.exception(f"after {what}", member=member[:12])
