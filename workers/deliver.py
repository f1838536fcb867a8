"""Deliver a job's next event to its callback, one at a time and in sequence order.

The delivery schedule holds one member per job with undelivered events, so per-job order comes
from the lease: only one worker handles a job's outbox at a time. Of several undelivered events,
progress events older than the newest are superseded (recorded, not sent); the terminal event is
never dropped and is always last.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aiohttp
import structlog
from yarl import URL

from relay import logs, metrics
from relay.core.crypto import InvalidToken
from relay.core.events import isoformat
from relay.core.retry import delivery_decision
from relay.core.schema import DeliveryOutcome, Event, EventType, Job
from relay.core.signing import signature_headers
from relay.outbound.client import read_body, request_options
from relay.outbound.failures import describe_failure, describe_status
from relay.outbound.ssrf import Blocked, check_url
from relay.store.scheduler import Claim
from workers.context import Deps
from workers.writes import MAX_BACKLOG, behind, landing

__all__ = ["deliver_claimed", "pick_event"]

log = structlog.stdlib.get_logger("relay.deliver")

MAX_RESPONSE = 64 * 1024
_DELIVERIES = metrics.labelled(metrics.DELIVERIES)
#: the series most attempts count in, resolved at the first and kept (none shown before it, as before)
_delivered_2xx = functools.cache(lambda: metrics.DELIVERIES.labels(DeliveryOutcome.DELIVERED, "2xx"))
_TERMINAL = EventType.terminal_types()


def pick_event(events: list[Event]) -> tuple[Event | None, list[Event]]:
    """The event to send now and the progress events it supersedes."""
    if len(events) < 2:  # the common case: one event, nothing superseded
        return (events[0] if events else None), []
    target = next((e for e in events if e.type in _TERMINAL), events[-1])
    superseded = [e for e in events if e.sequence < target.sequence and e.type not in _TERMINAL]
    return target, superseded


async def deliver_claimed(deps: Deps, claim: Claim) -> None:
    """Deliver a claimed job's next event (the claim read the job and its outbox).

    One coroutine, the POST inline: every await of the request resumes each frame above it (a frame less is
    ~1% of a delivery's instructions).
    """
    job_id = claim.member
    store = deps.store
    job, found = store.outbox_state(claim)
    event, superseded = (found[0], []) if len(found) == 1 else pick_event(found)  # one event: the usual case
    if job is None or event is None:
        pending = store.submit_ack(
            claim,
            event_id="",
            outcome=DeliveryOutcome.NONE,
            superseded=[e.id for e in superseded],
            landed=landing(None, what="delivery ack", member=job_id),
        )
        await behind(store, pending)
        return
    now_s = deps.clock.now()  # Redis' clock: a receiver checks webhook-timestamp against the real time
    stamp = isoformat(now_s)
    records: list[dict[str, Any]] = (
        [
            {
                "eventId": e.id,
                "type": e.type,
                "sequence": e.sequence,
                "attempt": e.attempts,
                "outcome": DeliveryOutcome.SUPERSEDED,
                "time": stamp,
            }
            for e in superseded
        ]
        if superseded
        else []
    )
    attempt = event.attempts + 1
    secrets, error = _signing_secrets(deps, job)
    status: int | None = None
    retry_after: str | None = None
    started = time.monotonic_ns()
    if error is None:  # nothing is sent unsigned, nor signed with another tenant's secret
        headers = signature_headers(event.id, event.body, secrets, datetime.fromtimestamp(now_s, UTC))
        headers["Content-Type"] = "application/json"
        try:  # POST the event to the job's callback; never raises for the receiver's faults
            # inline, not through fetch(): each await of the request resumes one frame less
            target = check_url(job.callback_url, deps.trusted_hosts)
            data = event.body.encode()
            options = request_options(deps.settings.request_timeout)  # made once per time limit
            async with deps.session.request("POST", target, headers=headers, data=data, **options) as resp:
                status, retry_after = resp.status, resp.headers.get("Retry-After")
                if not resp.content.at_eof():  # read (up to MAX_RESPONSE), so that the connection can be kept
                    await read_body(resp, MAX_RESPONSE)
        except (Blocked, TimeoutError, aiohttp.ClientError, OSError) as exc:
            status = retry_after = None
            error = describe_failure(exc, URL(job.callback_url), deps.settings.request_timeout)
        else:
            if not 200 <= status < 300:
                error = describe_status(status, URL(job.callback_url))
    elapsed_ns = time.monotonic_ns() - started
    duration = elapsed_ns / 1e9
    metrics.DELIVERY_LATENCY.observe(duration)
    # a redelivery starts the schedule again; the attempt numbers go on
    decision = delivery_decision(status, attempt - event.schedule_from, retry_after, now_s, deps.retry_policy, deps.rng)
    outcome, delay = decision.outcome, decision.delay
    records.append(
        {
            "eventId": event.id,
            "type": event.type,
            "sequence": event.sequence,
            "attempt": attempt,
            "outcome": outcome,
            "status": status,
            "error": error,
            "durationMs": (elapsed_ns + 50_000) // 100_000 / 10,  # to 0.1 ms, half up (round() of a float: ~3x)
            "time": stamp,
        }
    )
    answered = now_s + duration
    # what follows the ack: a partial, not an object made for it (its fields: _acked's arguments)
    acked = partial(_acked, job_id, event, attempt, outcome, status, error, duration, delay, len(superseded), answered)
    backstop = deps.backstops.get("delivery")  # a refused ack counts against the job's delivery
    failed = backstop.on_write_failure(job_id, claim) if backstop is not None else None
    pending = store.submit_ack(
        claim,
        event_id=event.id,
        outcome=outcome,
        delay=delay,
        superseded=[e.id for e in superseded] if superseded else None,
        records=records,
        error={"code": "callbackGone", "httpStatus": 410, "message": "the callback answered 410 Gone"}
        if outcome is DeliveryOutcome.GONE
        else None,
        landed=landing(acked, what="delivery ack", member=job_id, failed=failed),
    )
    if store.write_backlog > MAX_BACKLOG:  # checked here: no coroutine made for the usual case
        await behind(store, pending)


def _signing_secrets(deps: Deps, job: Job) -> tuple[tuple[str, ...], str | None]:
    """What signs the job's events (its own secret, else its tenant's), or why there is nothing to sign with."""
    try:
        job_secret = deps.vault.reveal(job.secret) if job.secret else ""
    except InvalidToken:
        return (), "unsigned: the job's secret was sealed with a key no longer in RELAY_ENCRYPTION_KEY"
    secrets = deps.signing.secrets(job.owner, job_secret)
    if not secrets:
        return (), "unsigned: no signing secret for this job's tenant (RELAY_TENANT_SIGNING_SECRETS)"
    return secrets, None


def _acked(
    job_id: str,
    event: Event,
    attempt: int,
    outcome: DeliveryOutcome,
    status: int | None,
    error: str | None,
    duration: float,
    delay: float,
    superseded: int,
    answered: float,  # when the answer came, by the worker's Redis clock (the event's creation time's)
    ok: bool,
) -> None:
    """One delivery attempt, counted and logged once its ack lands (``ok``: the claim was still ours)."""
    delivered = outcome is DeliveryOutcome.DELIVERED
    if delivered:
        if event.created:
            metrics.EVENT_LAG.observe(max(0.0, answered - event.created / 1000))
        _delivered_2xx().inc()  # a 2xx, by delivery_decision's rule
    else:
        _DELIVERIES(outcome, f"{status // 100}xx" if status is not None else "none").inc()
    # a success is counted in metrics and listed in /deliveries; the log line is for what went wrong
    # (and for a success only at debug level: not even built otherwise)
    if delivered and not logs.enabled(logging.DEBUG):
        return
    log.log(
        logging.DEBUG if delivered else logging.INFO,
        "delivery attempt",
        job_id=job_id,
        event_id=event.id,
        type=event.type,
        sequence=event.sequence,
        attempt=attempt,
        outcome=outcome,
        http_status=status,
        error=error,
        duration_ms=round(duration * 1000, 1),
        next_attempt_s=round(delay, 2) if outcome is DeliveryOutcome.FAILED else None,
        superseded=superseded or None,
        stale=not ok or None,
    )
