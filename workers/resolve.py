"""Resolve the new DriveItem of a completed job (an arq task) and record ``job.completed``.

Durability: the poller marks the job ``resolving`` (in the same script that records the completion)
before anything is fetched, and the completed monitor is looked at again a lease after that script (a worker
killed before recording the resolution costs that, as any claim it held), then every minute, resolving again
any job still resolving (a retry that fails goes to arq); arq's ``_job_id`` keeps that task single, and the
job's phase guard makes a second resolution record nothing.

A refused request (401, or a token whose ``exp`` has passed) does not end the job: it records
``job.authorizationRequired`` and waits for a PATCHed authorization (:mod:`relay.core.authorization`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import structlog
from arq import Retry
from arq.connections import ArqRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from yarl import URL

from relay import metrics
from relay.core import jsonfast
from relay.core.authorization import ask_op, bearer_expired, is_refusal
from relay.core.changes import completion_op
from relay.core.crypto import InvalidToken
from relay.core.graph_paths import InvalidItemId, fill_item_url, item_url_problem
from relay.core.hosts import host_matches
from relay.core.monitor import MAX_BODY
from relay.core.ops import JobOp
from relay.core.retry import RetryPolicy, resolution_retry
from relay.core.schema import Job, Phase
from relay.credentials.broker import CredentialError
from relay.outbound.client import Response, fetch
from relay.outbound.ssrf import Blocked
from relay.store import keys
from relay.store.refusals import SPELLS
from workers.backstop import counts
from workers.context import Deps

__all__ = ["RESOLVE_TASK", "enqueue_resolution", "resolve_item", "resolve_job", "resolve_soon"]

log = structlog.stdlib.get_logger("relay.resolve")

RESOLVE_TASK = "resolve_item"


async def enqueue_resolution(pool: ArqRedis, job_id: str, *, defer: float | None = None) -> None:
    await pool.enqueue_job(
        RESOLVE_TASK, job_id, _job_id=f"resolve:{job_id}", _queue_name=keys.ARQ_QUEUE, _defer_by=defer
    )


async def fetch_item(deps: Deps, job: Job, job_try: int) -> tuple[Any, dict[str, Any] | None]:
    """(driveItem, None) or (None, resolutionError); raises ``Retry`` when :func:`relay.core.retry.resolution_retry`
    says to try again.

    With a wait for fresh authorizations configured, a ``Bearer`` JWT whose ``exp`` has passed is not
    sent at all: the error ``authorizationExpired`` asks for a new one at once.
    """
    if job.drive_item:
        return json.loads(job.drive_item), None
    resource_id = job.resource_id
    template = job.drive_item_url
    if not template:
        return None, {"code": "noDriveItemUrl", "message": "no driveItemUrl was registered"}
    if not resource_id:
        return None, {"code": "noResourceId", "message": "the monitor reported no resourceId"}
    problem = item_url_problem(template)
    if problem is not None:  # checked at registration; a job stored before that check was made is held to it too
        return None, {"code": "blocked", "message": problem}
    try:  # a checked id, fully percent-encoded: it cannot change the URL's host or path
        url = fill_item_url(template, resource_id)
    except InvalidItemId as exc:  # the monitor's fault (``..``, a ``/``...): no request goes to another path
        return None, {"code": "invalidResourceId", "message": f"{exc}: it is not a DriveItem id"}
    if not host_matches(URL(url).host or "", deps.settings.item_allowed_hosts):
        # checked at registration too; the allowlist may have narrowed since: no token leaves for that host
        return None, {"code": "blocked", "message": "the DriveItem host is not in RELAY_ITEM_ALLOWED_HOSTS"}
    headers = {"Accept": "application/json"}
    authorization, error = await _authorization(deps, job, URL(url).host or "", job_try)
    if error is not None:
        return None, error
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        resp = await fetch(
            deps.session,
            "GET",
            url,
            trusted_hosts=deps.trusted_hosts,
            time_limit=deps.settings.request_timeout,
            max_body=MAX_BODY,
            headers=headers,
        )
    except Blocked as exc:
        return None, {"code": "blocked", "message": str(exc)}
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        _retry_if(resolution_retry(job_try, deps.retry_policy))
        return None, {"code": "networkError", "message": type(exc).__name__}
    return _item_answer(resp, job_try, deps.retry_policy, deps.clock.now())


def _retry_if(defer: float | None) -> None:
    """Carry out a retry decision: arq's ``Retry`` after ``defer`` seconds; None: go on to record the error."""
    if defer is not None:
        raise Retry(defer=defer)


def _item_answer(resp: Response, job_try: int, policy: RetryPolicy, now: float) -> tuple[Any, dict[str, Any] | None]:
    """What the DriveItem request's answer means: the item, an error, or (transient) a ``Retry``."""
    if resp.too_large:
        return None, {"code": "tooLarge", "httpStatus": resp.status, "message": "the DriveItem response is over 1 MiB"}
    if resp.status == 200:
        try:
            item = jsonfast.loads_peer(resp.body)  # lone surrogates scrubbed, nesting bounded
        except ValueError:
            item = None
        if isinstance(item, dict):
            return item, None
        return None, {"code": "invalidResponse", "httpStatus": 200, "message": "the DriveItem is not a JSON object"}
    _retry_if(resolution_retry(job_try, policy, resp.status, resp.headers.get("Retry-After"), now))
    return None, {"code": "httpError", "httpStatus": resp.status, "message": f"GET driveItemUrl answered {resp.status}"}


async def _authorization(deps: Deps, job: Job, host: str, job_try: int) -> tuple[str | None, dict[str, Any] | None]:
    """The DriveItem request's ``Authorization`` value (None: none), or the resolution error why it cannot be sent."""
    name = job.credential
    if name:  # a credential relay holds: a token from azure-identity, for its own hosts only
        if not deps.credentials.may_send(name, host):
            message = "the credential may not be sent to the DriveItem host (its itemHosts in RELAY_CREDENTIALS)"
            return None, {"code": "blocked", "message": message}
        try:
            return await deps.credentials.authorization(name), None
        except CredentialError as exc:
            if exc.reason in ("unavailable", "unreachable"):  # no answer: transient
                _retry_if(resolution_retry(job_try, deps.retry_policy))
            return None, {"code": "credentialError", "reason": exc.reason, "message": exc.detail}
    if not job.authorization:
        return None, None
    try:
        value = deps.vault.decrypt(job.authorization)
    except InvalidToken:
        return None, {
            "code": "authorizationUnreadable",
            "message": "the stored authorization was encrypted with another key",
        }
    if deps.settings.authorization_wait > 0 and bearer_expired(value, deps.clock.now()):
        return None, {"code": "authorizationExpired", "message": "the authorization's exp claim has passed"}
    return value, None


async def resolve_item(ctx: dict[str, Any], job_id: str) -> str:
    """The arq task: the durable path (a retry after a transient failure, or a recheck after a crash)."""
    return await resolve_guarded(ctx["deps"], job_id, int(ctx.get("job_try", 1)))


async def resolve_guarded(deps: Deps, job_id: str, job_try: int) -> str:
    """:func:`resolve_job`, its unexpected failures counted against the job and parked at the last strike
    (workers/backstop.py): the completed monitor's recheck would otherwise enqueue it again every minute,
    forever, with a traceback each time."""
    try:
        return await resolve_job(deps, job_id, job_try)
    except Retry:
        raise
    except Exception as exc:
        backstop = deps.backstops.get("resolution")
        if backstop is None or not counts(exc):
            raise
        strike = await backstop.failed(job_id, None, exc)
        return "parked" if strike >= backstop.strikes else "failed"


def resolve_soon(deps: Deps, job_id: str) -> None:
    """The fast path, right after the poll that saw the completion: resolve in this worker, now.

    arq starts its jobs one at a time with four round trips each; under load that queue, not the
    DriveItem request, was most of the completion lag. A transient failure here becomes an arq retry;
    a crash here is caught by the completed monitor's recheck, which enqueues the arq task. A job already
    being resolved here (a recheck came while thousands of a crowded monitor's jobs wait their turn) is left
    to that resolution.
    """
    if job_id in deps.resolving:
        return
    deps.resolving.add(job_id)
    task = asyncio.create_task(_resolve_now(deps, job_id))
    deps.background.add(task)
    task.add_done_callback(deps.background.discard)
    task.add_done_callback(lambda _: deps.resolving.discard(job_id))


async def _resolve_now(deps: Deps, job_id: str) -> None:
    structlog.contextvars.bind_contextvars(job_id=job_id)
    async with deps.resolve_slots:
        try:
            try:
                await resolve_guarded(deps, job_id, 1)
            except Retry as retry:
                defer = retry.defer_score / 1000 if retry.defer_score else None
                await enqueue_resolution(deps.arq, job_id, defer=defer)
        except Exception as exc:  # the monitor's recheck starts it again
            if SPELLS.refused(exc, "resolution") is None:  # a refusal (OOM...) is logged once per spell
                log.exception("resolution failed; the completed monitor's recheck will retry it")


#: pauses (seconds) before writing a resolution again while Redis refuses or is unreachable: about half a minute,
#: then the completed monitor's recheck takes over (a crash of the worker meanwhile: the recheck as well)
APPLY_BACKOFF = (1.0, 2.0, 4.0, 8.0, 8.0, 8.0)


async def _apply(deps: Deps, op: JobOp) -> str:
    """Write a resolution's outcome; while Redis refuses it (full, read-only...) or cannot be reached, again after
    a pause: the DriveItem in hand is not fetched again, and the job does not wait for the recheck a minute later.
    A write that landed without its answer coming back is found by its sequence guard (``stale``)."""
    for pause in (*APPLY_BACKOFF, None):
        try:
            return await deps.store.apply_job(op)
        except RedisError as exc:
            if pause is None or (SPELLS.refused(exc, "resolution") is None and not _unreachable(exc)):
                raise
        await asyncio.sleep(pause)
    raise AssertionError("unreachable")


def _unreachable(exc: RedisError) -> bool:
    return isinstance(exc, RedisConnectionError | RedisTimeoutError)


async def resolve_job(deps: Deps, job_id: str, job_try: int) -> str:
    # a second round when a PATCHed authorization arrived while a request with the old one was refused
    for _ in range(2):
        job = await deps.store.job(job_id)
        if not job or job.phase is not Phase.RESOLVING or job.terminal:
            return "skipped"
        item, error = await fetch_item(deps, job, job_try)
        now_ms = int(deps.clock.now() * 1000)  # Redis' clock: the authorization wait ends by the leases' time
        op = None
        if error is not None and is_refusal(error) and not job.credential:  # the app can mend its own token
            op = ask_op(job, now_ms, deps.settings.authorization_wait, error)
        asked = op is not None
        if op is None:
            op = completion_op(job, now_ms, item, error, phase=Phase.RESOLVING)
        outcome = await _apply(deps, op)
        if asked and outcome == "stale":
            continue
        label = "authorizationRequired" if asked else "resolved" if error is None else error["code"]
        metrics.RESOLUTIONS.labels(outcome=label).inc()
        if outcome == "ok":
            event = op.events[0]
            metrics.EVENTS.labels(type=event["type"]).inc()
            log.info(
                "event recorded", event_id=event["id"], type=event["type"], resolution_error=error and error["code"]
            )
        return outcome
    return "stale"
