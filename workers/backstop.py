"""The backstop: a poll, delivery or resolution that fails with an unexpected exception again and again is parked.

Whatever a peer sends is meant to end as an event (the peer's fault, said in it), and what relay cannot store or
send is refused at registration; this is for what no one foresaw. Each unexpected failure of a member (a
monitor's poll, a job's delivery, a job's DriveItem resolution) counts a strike in Redis with the member
(``relay:strikes:<kind>:<member>``, kept a day after the last one), so the count survives the worker's restart
and is seen by every worker that claims the member. At :data:`STRIKES` in a row the member is parked, with the
error recorded where its owner looks:

* a poll: each job sharing the monitor fails with ``internalError`` (the monitor ends with its last job);
* a delivery: the event it would send dead-letters, its attempt record saying why;
* a resolution: the job fails with ``internalError``.

Each park is counted (``relay_parked_total{kind}``) and logged once, as one line. The traceback of a member's
first failure is logged (rendered without locals, relay/logs.py); the next ones are not, so a member that fails
at every lease no longer writes a traceback each time. A failed member is handed back to its schedule after a
short pause (1 s, then 2 s...) rather than at the end of its lease.

"In a row": each strike keeps the count :data:`STRIKE_WINDOW` seconds (at least ten leases) more, and a member
that fails is tried again within a lease, so a member failing at every try is parked within a minute or so,
while one failing now and then (less often than the window) never is. A success does not clear the count: it
would cost a Redis call on every poll and delivery, and a write that fails after its poll succeeded would clear
it each time. Failures that are not the member's fault are not counted: Redis unreachable, loading, read-only
or out of memory, cluster redirections, the network (``OSError``), a cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.exceptions import RedisError, ResponseError

from relay import metrics
from relay.core.changes import failure_op
from relay.core.events import isoformat
from relay.core.schema import DeliveryOutcome, Job
from relay.store.jobs import Store
from relay.store.refusals import SPELLS, refusal_kind
from relay.store.scheduler import Claim, Scheduler
from workers.writes import after_write

__all__ = ["STRIKES", "STRIKE_WINDOW", "Backstop", "counts", "park_delivery", "park_poll", "park_resolution"]

log = structlog.stdlib.get_logger("relay.backstop")

#: unexpected failures in a row that park a member
STRIKES = 3
#: how long a strike is remembered after the last one (seconds; at least ten leases, see Backstop)
STRIKE_WINDOW = 600
#: what Redis answers in an outage (a script's error carries it too): not the member's fault
_OUTAGE_WORDS = (
    "OOM command",
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "BUSY",
    "NOREPLICAS",
    "NOSCRIPT",
    "MOVED",
    "ASK ",
)

Park = Callable[[str, Claim | None, str], Awaitable[None]]


def counts(exc: BaseException) -> bool:
    """Whether ``exc`` is a strike against the member: a script that refused its call (cjson refusing a value, a
    field that does not read) is; Redis or the network in an outage, or a cancellation, is not."""
    if not isinstance(exc, Exception):
        return False
    if refusal_kind(exc) is not None:  # full, read-only, busy...: whatever the message (redis-py drops the code)
        return False
    if isinstance(exc, ResponseError):
        text = str(exc)
        return not any(word in text for word in _OUTAGE_WORDS)
    return not isinstance(exc, RedisError | OSError)


def what_failed(exc: BaseException) -> str:
    """The error as recorded for the owner: its type only (its message may echo something the peer sent)."""
    return type(exc).__name__


class Backstop:
    """Counts one kind's unexpected failures (``poll``, ``delivery``, ``resolution``) and parks at STRIKES."""

    def __init__(
        self,
        store: Store,
        kind: str,
        park: Park,
        *,
        scheduler: Scheduler | None = None,
        lease: float = 0.0,
        strikes: int = STRIKES,
    ) -> None:
        """``scheduler``: where a failed member is handed back to, after a pause of 1 s, 2 s... (at most ``lease``)
        rather than at the end of its lease; a strike is kept ten leases, and at least STRIKE_WINDOW."""
        self.store = store
        self.kind = kind
        self.park = park
        self.scheduler = scheduler
        self.lease = lease
        self.strikes = strikes
        self.window = int(max(STRIKE_WINDOW, 10 * lease))

    async def failed(self, member: str, claim: Claim | None, exc: BaseException, **context: Any) -> int:
        """Count ``exc`` against ``member`` and park it at the last strike: the strike's number (0: not counted;
        the strikes' number when it was parked)."""
        if not counts(exc):
            if SPELLS.refused(exc, self.kind) is None:  # a refusal by Redis (OOM...) is logged once per spell
                log.warning("member failed", kind=self.kind, member=member[:12], error=what_failed(exc), **context)
            return 0
        try:
            count = await self.store.strike(self.kind, member, self.window)
        except Exception as not_counted:  # Redis went away meanwhile: the lease retries, the next failure counts
            log.warning(
                "member failed; its failure could not be counted",
                kind=self.kind,
                member=member[:12],
                error=what_failed(exc),
                count_error=what_failed(not_counted),
            )
            return 0
        if count == 1:  # the traceback once (locals never rendered); the next failures are counted quietly
            log.error(
                "member failed",
                kind=self.kind,
                member=member[:12],
                strike=count,
                of=self.strikes,
                exc_info=exc,
                **context,
            )
        if count < self.strikes:
            if claim is not None and self.scheduler is not None:  # tried again soon: parked within seconds
                try:
                    await self.scheduler.reschedule(claim, min(self.lease, float(2 ** (count - 1))))
                except Exception as not_handed_back:  # its lease hands it back
                    log.warning("member not handed back", member=member[:12], error=what_failed(not_handed_back))
            return count
        error = f"{what_failed(exc)}, {count} times in a row"
        try:
            await self.park(member, claim, error)
        except Exception as park_error:  # the next lease tries again (the count stays over the limit)
            log.warning("park failed", kind=self.kind, member=member[:12], error=what_failed(park_error))
            return count
        # counted once made, before another Redis call: what the park sent may arrive first, and a clearing that fails
        # must not leave a park uncounted and unlogged
        metrics.PARKED.labels(kind=self.kind).inc()
        log.error("parked", kind=self.kind, member=member[:12], error=error, **context)
        try:
            await self.store.clear_strikes(self.kind, member)
        except Exception as not_cleared:  # they expire with the window; a next failure parks again (nothing left)
            log.warning("strikes not cleared", kind=self.kind, member=member[:12], error=what_failed(not_cleared))
        return count

    def on_write_failure(self, member: str, claim: Claim | None) -> Callable[[BaseException], None]:
        """What a write-behind (workers/writes.py) calls when its write failed: the failure counts too."""

        def strike(exc: BaseException) -> None:
            if counts(exc):
                task = asyncio.get_running_loop().create_task(self.failed(member, claim, exc, what="write"))
                _background.add(task)
                task.add_done_callback(_background.discard)

        return strike


#: strikes counted after a failed write-behind, held until they land
_background: set[asyncio.Task[Any]] = set()


def internal_error(what: str, error: str) -> dict[str, Any]:
    return {
        "code": "internalError",
        "message": f"relay's {what} failed with an unexpected error ({error}); parked rather than retried forever",
    }


async def _job(store: Store, job_id: str) -> Job | None:
    """The job, or what of it reads when a field does not (maybe what failed): enough to record its end (a number
    that is not one, a status no version writes: left out, read as defaults)."""
    return await store.job(job_id, lenient=True)


def park_poll(store: Store, now: Callable[[], float]) -> Park:
    """Fail every job of the monitor with internalError (the monitor ends with its last job). ``now``: the
    worker's clock (Redis', relay/store/clock.py), as every event's time."""

    async def park(member: str, _: Claim | None, error: str) -> None:
        now_ms = int(now() * 1000)
        for job_id in await store.monitor_job_ids(member):
            job = await _job(store, job_id)
            if job is None or job.terminal:
                continue
            await store.apply_job(failure_op(job, now_ms, internal_error("poll of this job's monitor", error)))

    return park


def park_resolution(store: Store, now: Callable[[], float]) -> Park:
    """Fail the job with internalError (``now``: the worker's clock, as for :func:`park_poll`)."""

    async def park(job_id: str, _: Claim | None, error: str) -> None:
        job = await _job(store, job_id)
        if job is None or job.terminal:
            return
        await store.apply_job(failure_op(job, int(now() * 1000), internal_error("DriveItem resolution", error)))

    return park


def park_delivery(store: Store, now: Callable[[], float]) -> Park:
    """Dead-letter the event the delivery would send (the first undelivered one when even that does not read);
    ``now``: the worker's clock, as for :func:`park_poll`."""

    async def park(job_id: str, claim: Claim | None, error: str) -> None:
        assert claim is not None
        from workers.deliver import pick_event  # here: deliver imports workers.context, which imports this module

        try:
            _, events = store.outbox_state(claim)
            event = pick_event(events)[0]
            event_id, kind, sequence, attempts = (
                (event.id, event.type, event.sequence, event.attempts) if event else ("", None, None, 0)
            )
        except Exception:  # the outbox itself does not read: its first event
            ids = store.outbox_event_ids(claim)
            event_id, kind, sequence, attempts = (ids[0] if ids else ""), None, None, 0
        if not event_id:
            return
        record = {
            "eventId": event_id,
            "type": kind,
            "sequence": sequence,
            "attempt": attempts + 1,
            "outcome": DeliveryOutcome.DEAD,
            "status": None,
            "error": f"internal error: relay's delivery failed with an unexpected error ({error}); parked",
            "durationMs": 0.0,
            "time": isoformat(now()),
        }
        pending = store.submit_ack(claim, event_id=event_id, outcome=DeliveryOutcome.DEAD, records=[record])
        await after_write(store, pending, None, what="parked delivery", member=job_id)

    return park
