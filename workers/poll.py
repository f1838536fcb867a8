"""Poll one claimed monitor and record what it means for every job sharing it.

A monitor shared by more jobs than one Redis script should read or write is polled in chunks
(:func:`poll_in_chunks`): its claim brought it without its jobs; its own fields are read, the monitor is
asked once, and what its answer means is decided before any job is looked at (``plan_answer``); then
successive steps of poll_chunk.lua each write the changes planned from the previous chunk of jobs and read
the next one, until the last step lets the monitor go. Each step is guarded by the claim token (and each
change by its job's sequence) and renews the lease, so the monitor stays with this worker until every chunk
is written. The first step also stores the answer in the monitor (``outcome``), and the last deletes it: a
worker that dies between them leaves the lease to run out, and the next to claim the monitor writes that
answer again to every job (those already written are not changed twice) without asking the monitor again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache, partial
from typing import Any

import aiohttp
import structlog
from yarl import URL

from relay import logs, metrics
from relay.config.settings import Settings
from relay.core.crypto import InvalidToken
from relay.core.hosts import host_matches
from relay.core.monitor import MAX_BODY, Kind, PollResult, classify
from relay.core.ops import JobOp
from relay.core.schema import Job, Monitor
from relay.core.tracking import (
    JobsPlan,
    Outcome,
    PollPlan,
    completed_from_monitor,
    next_delay,
    plan_answer,
    plan_jobs,
    plan_poll,
)
from relay.outbound.client import fetch
from relay.outbound.ssrf import Blocked
from relay.store.jobs import ChunkRead, PollWritten
from relay.store.scheduler import Claim
from workers.context import Deps
from workers.resolve import resolve_soon
from workers.writes import MAX_BACKLOG, after_write, behind, landing

__all__ = ["poll_claimed", "poll_in_chunks", "poll_monitor"]

log = structlog.stdlib.get_logger("relay.poll")

_MONITOR_HEADERS = {"Accept": "application/json"}
_POLLS = metrics.labelled(metrics.POLLS)
_EVENTS = metrics.labelled(metrics.EVENTS)


async def request_monitor(session: aiohttp.ClientSession, settings: Settings, url: str) -> PollResult:
    """GET the monitor: no credentials, no redirects, at most 1 MiB read. Never raises for the peer's faults."""
    target = _monitor_target(url, settings.monitor_allowed_hosts)
    if isinstance(target, str):
        return PollResult(Kind.INVALID, detail=target)
    try:
        resp = await fetch(
            session,
            "GET",
            target,
            trusted_hosts=settings.internal_hosts,
            time_limit=settings.request_timeout,
            max_body=MAX_BODY,
            headers=_MONITOR_HEADERS,
            own_headers=True,  # relay's own: no control characters to look for
        )
    except Blocked as exc:
        return PollResult(Kind.INVALID, detail=f"blocked: {exc}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return PollResult(Kind.RETRY, detail=f"network: {type(exc).__name__}")
    metrics.POLL_LATENCY.observe(resp.elapsed)
    return classify(resp.status, resp.headers, resp.body, too_large=resp.too_large)


@lru_cache(maxsize=16384)
def _monitor_target(url: str, allowed_hosts: tuple[str, ...]) -> URL | str:
    """The monitor URL parsed and its host checked, once per URL (a worker polls the same monitors again and
    again; fetch's SSRF check shares the parse); a string says why it may not be polled."""
    try:
        target = URL(url)
    except ValueError:
        return "the monitor URL does not parse"
    if not host_matches(target.host or "", allowed_hosts):
        return "monitor host not in RELAY_MONITOR_ALLOWED_HOSTS"
    return target


def poll_claimed(deps: Deps, claim: Claim) -> Awaitable[None]:
    """Poll a claimed monitor (the claim read its state and its jobs', or marked it crowded). Not a coroutine
    itself: it hands over the one that polls, so that each await of a poll resumes one frame less."""
    monitor, jobs = deps.store.monitor_state(claim)
    if jobs is None:  # too many jobs to read with a claim
        return _poll_crowded(deps, claim)
    if monitor.outcome:  # a poll in chunks cut short
        return poll_in_chunks(deps, claim, monitor)
    return poll_monitor(deps, claim, monitor, jobs)


async def _poll_crowded(deps: Deps, claim: Claim) -> None:
    await poll_in_chunks(deps, claim, await deps.store.monitor(claim.member))


async def poll_monitor(deps: Deps, claim: Claim, monitor: Monitor, jobs: list[Job]) -> None:
    started = time.monotonic()
    # no monitor bound to the runner's context: what is logged about this poll is logged after its write lands, in
    # the batch's context (another runner's), so those lines name their monitor themselves
    if not jobs:
        pending = deps.store.submit_poll(claim, Monitor(), [], 0.0)
        await after_write(deps.store, pending, None, what="poll result", member=claim.member)
        return
    result = completed_from_monitor(monitor)
    polled = result is None
    if result is None:
        result = await _poll(deps, monitor)
        _POLLS(result.kind).inc()  # a Kind is its value (a StrEnum): the same label
    now_ms = claim.now_ms + int((time.monotonic() - started) * 1000)
    plan = plan_poll(result, monitor, jobs, now_ms, deps.poll_policy, deps.rng, polled=polled)
    then = landing(
        partial(_applied, deps, plan, result if polled else None, len(jobs), claim.member[:12]),
        what="poll result",
        member=claim.member,
        failed=_strike(deps, claim),
        unknown=partial(_resolve_stored, deps, plan.resolve) if plan.resolve else None,
    )
    pending = deps.store.submit_poll(claim, plan.monitor_change, plan.ops, plan.delay, jobs=len(jobs), landed=then)
    if deps.store.write_backlog > MAX_BACKLOG:  # checked here: no coroutine made for the usual case
        await behind(deps.store, pending)


def _strike(deps: Deps, claim: Claim) -> Callable[[BaseException], None] | None:
    """A refused poll write counts against the monitor (workers/backstop.py)."""
    backstop = deps.backstops.get("poll")
    return backstop.on_write_failure(claim.member, claim) if backstop is not None else None


def _applied(
    deps: Deps, plan: PollPlan, polled: PollResult | None, jobs: int, monitor: str, written: PollWritten
) -> None:
    """What follows a poll's write: count and log what it recorded, start the resolutions it calls for. It runs in
    the context of the batch that wrote it, so its lines name ``monitor`` (the member's first 12 characters)."""
    if written.stale:
        log.info(
            "poll result dropped: claim taken over by another worker, or the write landed and its reply was lost",
            monitor=monitor,
        )
        # redis-py sends a write again when the connection is lost before its reply: its second run finds the
        # claim gone, if the first landed; the resolutions it called for are found again in the jobs' phase
        _resolve_stored(deps, plan.resolve)
        return
    for message, fields in plan.warnings:  # the start of a stretch of bare 5xx or unknown status words
        log.warning(message, monitor=monitor, **fields)
    _recorded(plan.ops, written.applied, monitor)
    if polled is not None and logs.enabled(logging.DEBUG):  # a line per poll is built only when it is written
        log.debug(
            "monitor polled",
            monitor=monitor,
            outcome=polled.kind.value,
            http_status=polled.http_status,
            status=polled.status,
            pct=polled.percentage,
            jobs=jobs,
            next_poll_s=round(plan.delay, 2),
            detail=polled.detail or None,
        )
    for job_id in plan.resolve:
        # also on the recheck of a completed monitor (a resolution lost with a worker, or a job woken by a
        # fresh authorization): a second resolution of a job records nothing (its phase guard)
        resolve_soon(deps, job_id)


def _resolve_stored(deps: Deps, job_ids: list[str]) -> None:
    """Start the resolutions a write may have recorded without its answer coming back: each reads its job, and
    does nothing unless the job is resolving (a write that did not land leaves it tracking)."""
    for job_id in job_ids:
        resolve_soon(deps, job_id)


async def poll_in_chunks(deps: Deps, claim: Claim, monitor: Monitor) -> None:
    """Poll a monitor whose jobs are read and written a chunk at a time (see the module's docstring)."""
    structlog.contextvars.bind_contextvars(monitor=claim.member[:12])
    store, policy = deps.store, deps.poll_policy
    change = Monitor()
    warnings: tuple[tuple[str, dict[str, Any]], ...] = ()
    outcome = _stored_outcome(monitor)  # a poll cut short: its answer, written again to every job
    if outcome is None:
        started = time.monotonic()
        result = completed_from_monitor(monitor)
        polled = result is None
        if result is None:
            result = await _poll(deps, monitor)
            _POLLS(result.kind).inc()  # a Kind is its value (a StrEnum): the same label
        now_ms = claim.now_ms + int((time.monotonic() - started) * 1000)
        plan, outcome = plan_answer(result, monitor, now_ms, policy, deps.rng, polled=polled, jobs=monitor.jobs)
        change, warnings = plan.monitor_change, plan.warnings
        change.outcome = outcome.to_json()
    lease_ms = int(deps.settings.lease * 1000)
    asks, seen = JobsPlan(), set[str]()
    planned = JobsPlan()
    cursor = "0"
    while True:
        read = await store.poll_chunk(claim, change, planned.ops, cursor, lease_ms)
        if not _chunk_landed(deps, planned, read):
            return
        assert read is not None
        for message, extra in warnings:  # the start of a stretch of bare 5xx or unknown status words
            log.warning(message, **extra)
        change, warnings = Monitor(), ()
        fresh = [job for job in read.jobs if job.id not in seen]  # a job can come twice while the hash resizes
        seen.update(job.id for job in fresh)
        planned = plan_jobs(outcome, fresh, policy)
        asks.merge(planned)
        cursor = read.cursor
        if cursor == "0":
            break
    delay = next_delay(outcome, asks, policy.lease)
    store.monitors.handed_back(delay, claim.bucket)
    _chunk_landed(deps, planned, await store.poll_chunk_last(claim, planned.ops, delay, len(seen), lease_ms))


def _stored_outcome(monitor: Monitor) -> Outcome | None:
    """The answer of a poll in chunks cut short, if the monitor keeps one that reads (else it is polled again)."""
    if not monitor.outcome:
        return None
    try:
        return Outcome.from_json(monitor.outcome)
    except (ValueError, TypeError, KeyError):
        log.warning("the stored answer of an interrupted poll does not read: polling the monitor again")
        return None


def _chunk_landed(deps: Deps, planned: JobsPlan, read: ChunkRead | None) -> bool:
    """What follows a step of a poll in chunks: count and log what the changes planned from the previous chunk
    recorded, and start the resolutions they call for; False when the claim was taken over."""
    if read is None:
        log.info("poll result dropped: claim taken over by another worker, or the write landed and its reply was lost")
        _resolve_stored(deps, planned.resolve)
        return False
    _recorded(planned.ops, read.applied)  # the runner's context names the monitor (poll_in_chunks binds it)
    for job_id in planned.resolve:
        resolve_soon(deps, job_id)
    return True


def _poll(deps: Deps, monitor: Monitor) -> Awaitable[PollResult]:
    """The monitor asked (its caller counts the answer, ``_POLLS``). Not a coroutine itself: it hands over the
    request's, so that each await of it resumes one frame less."""
    try:
        url = deps.vault.reveal(monitor.url)
    except InvalidToken:
        return _sealed_with_another_key()
    return request_monitor(deps.session, deps.settings, url)


async def _sealed_with_another_key() -> PollResult:
    return PollResult(Kind.INVALID, detail="the stored monitor URL was sealed with a key no longer configured")


def _recorded(ops: list[JobOp], outcomes: list[str], monitor: str | None = None) -> None:
    """Count and log the events the poll's write recorded (``monitor``: named on each line, where the context
    does not)."""
    if not ops:  # the usual poll: nothing changed
        return
    for op, outcome in zip(ops, outcomes, strict=True):
        if outcome == "ok":
            for event in op.events:
                _EVENTS(event["type"]).inc()
                if monitor is None:
                    log.info("event recorded", job_id=op.job, event_id=event["id"], type=event["type"])
                else:
                    log.info("event recorded", monitor=monitor, job_id=op.job, event_id=event["id"], type=event["type"])
