"""Events without a public endpoint: a job's events as Server-Sent Events, the stream of a caller's jobs, and
the long-poll of ``GET /v1/jobs/{id}?wait=``.

Streams look at Redis every ``sse.POLL_INTERVAL`` seconds, which keeps them independent of the workers (no
pub/sub to miss).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from relay.api import sse
from relay.api.access import owned_job
from relay.api.http import render_job
from relay.api.middlewares import OWNER
from relay.api.params import limit
from relay.api.problems import ProblemError
from relay.api.routing import AUTH, LIMIT, OWNED, SSE, ApiRoutes, Operation, problem
from relay.api.typedefs import SIGNING, STORE, VAULT
from relay.core.crypto import InvalidToken
from relay.core.schema import EventType, Job
from relay.core.signing import signature_headers

__all__ = ["routes", "wait_for_change"]

routes = ApiRoutes()
_TERMINAL = EventType.terminal_types()
_TOO_MANY_STREAMS = problem("The token holds RELAY_TENANT_MAX_STREAMS streams open on this process (Retry-After)")


async def wait_for_change(request: web.Request, job: Job, seconds: float, sequence: int | None) -> Job | None:
    """The job once its sequence differs from ``sequence`` (default: its sequence now), it is terminal, or
    ``seconds`` have passed, whichever comes first; None if it disappeared meanwhile."""
    store = request.app[STORE]
    baseline = job.sequence if sequence is None else sequence
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    current: Job | None = job
    while current is not None:
        if current.sequence != baseline or current.terminal:
            break
        remaining = deadline - loop.time()
        if remaining <= 0 or sse.disconnected(request):
            break
        if await sse.pause(request.app, min(sse.POLL_INTERVAL / 2, remaining)):
            break
        current = await store.job(job.id, lenient=True)
    return current


@routes.get(
    "/v1/jobs/{job_id}/events",
    Operation(
        "streamJobEvents",
        description=(
            "Server-Sent Events: every event of the job in sequence order, each exactly as POSTed to the callback "
            "(see `webhooks`). Per message: `id` (the webhook-id), `event` (the type), `webhook-id`, "
            "`webhook-timestamp` and `webhook-signature` fields (signed as of the event's recording: the same frame on "
            "every read; verify as webhook headers), then `data` (the JSON body). Resumes after `Last-Event-ID`. A "
            "`: keep-alive` comment every 15 s; the stream ends after the final event (or when the job is cancelled)."
        ),
        parameters=[{"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}}],
        responses={
            "200": {"description": "The event stream", "content": SSE},
            **OWNED,
            "409": problem("The job's secret was sealed with a key no longer configured"),
            "429": _TOO_MANY_STREAMS,
        },
    ),
)
async def job_events(request: web.Request) -> web.StreamResponse:
    """Every event of the job in sequence order, each exactly as POSTed to the callback, signed as of when it was
    recorded: reading an event again gives the same frame, so a receiver's replay window holds for frames too."""
    job = await owned_job(request)
    store = request.app[STORE]
    secrets = request.app[SIGNING].secrets(job.owner, _job_secret(request, job))
    last_event_id = request.headers.get("Last-Event-ID")
    position = await store.event_position(job.id, last_event_id) if last_event_id else 0
    with sse.slot(request, job.owner):
        return await _job_events(request, job, secrets, position)


def _job_secret(request: web.Request, job: Job) -> str:
    """The job's own signing secret, unsealed ('' when it has none, or it was sealed with a key since dropped)."""
    try:
        return request.app[VAULT].reveal(job.secret) if job.secret else ""
    except InvalidToken:
        raise ProblemError(
            409, "Secret unreadable", "the job's secret was sealed with a key no longer configured"
        ) from None


async def _job_events(request: web.Request, job: Job, secrets: tuple[str, ...], position: int) -> web.StreamResponse:
    store = request.app[STORE]
    response = await sse.open_stream(request)
    loop = asyncio.get_running_loop()
    next_keepalive = loop.time() + sse.KEEPALIVE_INTERVAL
    try:
        while True:
            page = await store.events_after(job.id, position)
            position += page.read
            ended = page.ended
            for event_id, event_type, body, created in page.events:
                signed_at = datetime.fromtimestamp((created or job.created) / 1000, UTC)
                headers = signature_headers(event_id, body, secrets, signed_at) if secrets else {}
                await response.write(sse.frame(event_id, event_type or "message", body, headers))
                next_keepalive = loop.time() + sse.KEEPALIVE_INTERVAL
                if event_type in _TERMINAL:
                    ended = True
                    break
            if ended:
                break
            idle = await sse.idle_turn(request, response, next_keepalive)
            if idle is None:
                break
            next_keepalive = idle
    except ConnectionResetError:  # the client went away mid-write
        pass
    return response


@routes.get(
    "/v1/stream",
    Operation(
        "streamJobs",
        description=(
            "Server-Sent Events of the caller's `limit` newest jobs: `event: job` with the job (as getJob returns it) "
            "for each of them on connect, then whenever one changes (new event, status, delivery attempt); jobs "
            "created meanwhile join. Never ends by itself."
        ),
        parameters=[LIMIT],
        responses={
            "200": {"description": "The event stream", "content": SSE},
            **AUTH,
            "422": problem("Bad limit"),
            "429": _TOO_MANY_STREAMS,
        },
    ),
)
async def owner_stream(request: web.Request) -> web.StreamResponse:
    """``event: job`` with the job (as ``GET /v1/jobs/{id}`` shows it) whenever one of the caller's
    ``limit`` newest jobs changes: a new event, a status change, a delivery attempt. All of them once
    on connect, so a reconnecting client starts from a full picture. Never ends by itself."""
    count = limit(request)
    with sse.slot(request, request[OWNER]):
        return await _owner_stream(request, count)


async def _owner_stream(request: web.Request, count: int) -> web.StreamResponse:
    owner = request[OWNER]
    store = request.app[STORE]
    # everything registered up to the index's newest entry now is covered by the first listing
    newest = await store.index_top(owner)
    jobs, _ = await store.owned_jobs(owner, count, "+")
    watched: dict[str, float] = {job.id: float(job.created) for job in jobs}
    marks: dict[str, tuple[Any, ...]] = {}
    response = await sse.open_stream(request)
    loop = asyncio.get_running_loop()
    next_keepalive = loop.time() + sse.KEEPALIVE_INTERVAL
    try:
        while True:
            fresh, newest = await store.owned_since(owner, newest)  # jobs registered since the last look
            for job_id, entry_id in fresh:
                watched[job_id] = float(entry_id.split("-", 1)[0])
            if len(watched) > count:
                watched = dict(sorted(watched.items(), key=lambda item: item[1], reverse=True)[:count])
            order = sorted(watched, key=lambda jid: watched[jid])  # oldest first: the newest ends on top
            for job_id, mark in zip(order, await store.change_marks(order), strict=True):
                if mark[0] != owner:  # expired
                    watched.pop(job_id, None)
                    marks.pop(job_id, None)
                    continue
                if marks.get(job_id) == mark:
                    continue
                job = await store.job(job_id, lenient=True)
                if job is None:
                    continue
                marks[job_id] = mark
                view = await render_job(request, job)
                await response.write(sse.frame(None, "job", json.dumps(view, separators=(",", ":"))))
                next_keepalive = loop.time() + sse.KEEPALIVE_INTERVAL
            idle = await sse.idle_turn(request, response, next_keepalive)
            if idle is None:
                break
            next_keepalive = idle
    except ConnectionResetError:
        pass
    return response
