"""Events without a public endpoint: Server-Sent Events, long-poll, and listings for the dashboard and CLI.

* ``GET /v1/jobs`` — the caller's jobs, newest first, paginated with ``?limit=`` and ``?cursor=``.
* ``GET /v1/jobs/{id}/events`` — the job's events as ``text/event-stream``, each exactly as POSTed to
  the callback, with the Standard Webhooks headers as extra SSE fields (see :func:`sse_frame`).
* ``GET /v1/stream`` — one stream of changes to the caller's newest jobs (what ``/ui`` listens to).
* ``GET /v1/dead-letters`` — the caller's dead-lettered events, newest first.
* :func:`parse_wait` and :func:`wait_for_change` — ``GET /v1/jobs/{id}?wait=SECONDS`` (handler in views).

Reads only: every write stays in :mod:`relay.store`. Streams check Redis every ``POLL_INTERVAL``
seconds, which keeps them independent of the workers (no pub/sub to miss).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from typing import Any

from aiohttp import web

from relay.api.access import owned_job
from relay.api.middlewares import OWNER
from relay.api.problems import ProblemError
from relay.api.typedefs import REDIS, SETTINGS, STORE
from relay.core.events import TERMINAL_TYPES, isoformat
from relay.core.signing import signature_headers
from relay.store import keys
from relay.store.jobs import Store

__all__ = [
    "DEFAULT_LIMIT",
    "KEEPALIVE_INTERVAL",
    "MAX_LIMIT",
    "MAX_WAIT",
    "POLL_INTERVAL",
    "owned_jobs",
    "parse_wait",
    "routes",
    "setup_live",
    "sse_frame",
    "wait_for_change",
]

routes = web.RouteTableDef()

#: how often streams and long-polls look at Redis for something new (seconds)
POLL_INTERVAL = 0.5
#: a comment line is sent this often on an idle stream so proxies keep it open (seconds)
KEEPALIVE_INTERVAL = 15.0
#: ``?wait=`` is capped at this many seconds
MAX_WAIT = 60.0
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: a listing request looks at no more than this many index entries (other owners' jobs included)
_MAX_SCAN = 5000
_SCAN_BATCH = 200
_DEAD_SCAN = 1000

_CURSOR = re.compile(r"^\d{1,16}-\d{1,16}$")
_STOPPING = web.AppKey("live_stopping", asyncio.Event)
_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def setup_live(app: web.Application) -> None:
    """Register the routes, and end open streams when the app shuts down (not after its timeout)."""
    app[_STOPPING] = asyncio.Event()
    app.on_shutdown.append(_stop_streams)
    app.add_routes(routes)


async def _stop_streams(app: web.Application) -> None:
    app[_STOPPING].set()


# -- helpers ----------------------------------------------------------------------------------


def _field_error(field: str, message: str) -> ProblemError:
    return ProblemError(422, "Invalid query parameter", message, errors=[{"field": field, "message": message}])


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise _field_error("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _disconnected(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _pause(app: web.Application, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when the app is shutting down."""
    stopping = app[_STOPPING]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


async def _idle_turn(request: web.Request, response: web.StreamResponse, next_keepalive: float) -> float | None:
    """Between two looks at Redis: a keep-alive comment when one is due, then a pause.

    Returns when the next keep-alive is due, or None when the stream should end (client gone, app stopping).
    """
    if _disconnected(request):
        return None
    loop = asyncio.get_running_loop()
    if loop.time() >= next_keepalive:
        await response.write(b": keep-alive\n\n")
        next_keepalive = loop.time() + KEEPALIVE_INTERVAL
    if await _pause(request.app, POLL_INTERVAL):
        return None
    return next_keepalive


def sse_frame(event_id: str | None, event_type: str, data: str, extra: dict[str, str] | None = None) -> bytes:
    """One SSE message. ``extra`` fields come after ``event:`` and before ``data:``.

    SSE clients ignore field names they do not know, so ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` lines pass through EventSource unharmed and are there for clients that
    read the stream themselves and verify it.
    """
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event_type}")
    for name, value in (extra or {}).items():
        lines.append(f"{name}: {value}")
    # compact JSON has no raw line breaks; split anyway so a line break could never end the frame
    lines.extend(f"data: {part}" for part in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


async def _open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    return response


# -- GET /v1/jobs/{id}?wait= ------------------------------------------------------------------


def parse_wait(request: web.Request) -> tuple[float, int | None] | None:
    """``?wait=SECONDS`` (0..60) and the optional ``?sequence=N`` it compares with; None without ``wait``."""
    raw = request.query.get("wait")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise _field_error("wait", f"wait must be a number of seconds from 0 to {MAX_WAIT:g}") from None
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_WAIT:
        raise _field_error("wait", f"wait must be a number of seconds from 0 to {MAX_WAIT:g}")
    sequence: int | None = None
    raw_seq = request.query.get("sequence")
    if raw_seq is not None:
        if not raw_seq.isdigit() or len(raw_seq) > 18:
            raise _field_error("sequence", "sequence must be a whole number >= 0")
        sequence = int(raw_seq)
    return seconds, sequence


async def wait_for_change(
    request: web.Request, job: dict[str, str], seconds: float, sequence: int | None
) -> dict[str, str] | None:
    """The job once its ``seq`` differs from ``sequence`` (default: its ``seq`` now), it is terminal,
    or ``seconds`` have passed, whichever comes first; None if it disappeared meanwhile."""
    store = request.app[STORE]
    baseline = int(job.get("seq") or 0) if sequence is None else sequence
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    current: dict[str, str] | None = job
    while current is not None:
        if int(current.get("seq") or 0) != baseline or current.get("terminal") == "1":
            break
        remaining = deadline - loop.time()
        if remaining <= 0 or _disconnected(request):
            break
        if await _pause(request.app, min(POLL_INTERVAL / 2, remaining)):
            break
        current = await store.job(job["id"])
    return current


# -- GET /v1/jobs -----------------------------------------------------------------------------


def _start(cursor: str | None) -> str:
    """The XREVRANGE end to list from: the newest entry, or just before the cursor's entry."""
    if cursor is None:
        return "+"
    if _CURSOR.match(cursor) is None:
        raise _field_error("cursor", "cursor must be a nextCursor value from an earlier page")
    return f"({cursor}"


async def owned_jobs(
    store: Store, owner: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, str]], str | None]:
    """Up to ``limit`` of ``owner``'s job hashes, newest first, and the cursor of the next page.

    The cursor is the index entry id of the last job looked at; an expired job's entry still orders
    the rest, so a cursor outlives the job it names.
    """
    redis = store.redis
    end = _start(cursor)
    found: list[dict[str, str]] = []
    last: str | None = None
    scanned = 0
    while len(found) < limit and scanned < _MAX_SCAN:
        batch: list[tuple[str, dict[str, str]]] = await redis.xrevrange(keys.JOBS_INDEX, end, "-", _SCAN_BATCH)
        if not batch:
            return found, None
        async with redis.pipeline(transaction=False) as pipe:
            for _, entry in batch:
                pipe.hget(keys.job(entry["j"]), "owner")
            owners = await pipe.execute()
        mine: list[str] = []
        for (entry_id, entry), job_owner in zip(batch, owners, strict=True):
            scanned += 1
            last = entry_id
            if job_owner == owner:
                mine.append(entry["j"])
                if len(found) + len(mine) == limit:
                    break
        if mine:
            found.extend(await store.jobs(mine))
        end = f"({last}"
    if last is None or not await redis.xrevrange(keys.JOBS_INDEX, f"({last}", "-", 1):
        return found, None
    return found, last


@routes.get("/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    limit = _limit(request)
    jobs, next_cursor = await owned_jobs(request.app[STORE], request[OWNER], limit, request.query.get("cursor"))
    store = request.app[STORE]
    views = await asyncio.gather(*(store.job_view(job) for job in jobs))
    return web.json_response({"jobs": list(views), "nextCursor": next_cursor})


# -- GET /v1/jobs/{id}/events -----------------------------------------------------------------


@routes.get("/v1/jobs/{job_id}/events")
async def job_events(request: web.Request) -> web.StreamResponse:
    job = await owned_job(request)
    job_id = job["id"]
    redis = request.app[REDIS]
    secrets = list(request.app[SETTINGS].signing_secrets)
    if job.get("secret"):
        secrets.append(job["secret"])
    position = 0
    last_event_id = request.headers.get("Last-Event-ID")
    if last_event_id:
        ids: list[str] = await redis.lrange(keys.job_events(job_id), 0, -1)  # type: ignore[misc]  # redis-py 5 types sync|async
        if last_event_id in ids:
            position = ids.index(last_event_id) + 1
    response = await _open_stream(request)
    loop = asyncio.get_running_loop()
    next_keepalive = loop.time() + KEEPALIVE_INTERVAL
    try:
        while True:
            async with redis.pipeline(transaction=True) as pipe:  # one snapshot: terminal flag and events agree
                pipe.hget(keys.job(job_id), "terminal")
                pipe.exists(keys.job(job_id))
                pipe.lrange(keys.job_events(job_id), position, -1)
                terminal, exists, new_ids = await pipe.execute()
            ended = terminal == "1" or not exists
            if new_ids:
                async with redis.pipeline(transaction=False) as pipe:
                    for event_id in new_ids:
                        pipe.hmget(keys.event(event_id), ["type", "body"])
                    rows = await pipe.execute()
                for event_id, (event_type, body) in zip(new_ids, rows, strict=True):
                    position += 1
                    if not body:  # expired with its retention
                        continue
                    headers = signature_headers(event_id, body, secrets) if secrets else {}
                    await response.write(sse_frame(event_id, event_type or "message", body, headers))
                    next_keepalive = loop.time() + KEEPALIVE_INTERVAL
                    if event_type in TERMINAL_TYPES:
                        ended = True
                        break
            if ended:
                break
            idle = await _idle_turn(request, response, next_keepalive)
            if idle is None:
                break
            next_keepalive = idle
    except ConnectionResetError:  # the client went away mid-write
        pass
    return response


# -- GET /v1/stream ---------------------------------------------------------------------------

_FINGERPRINT_FIELDS = ["owner", "seq", "status", "percentage", "terminal", "resource_id", "phase"]


@routes.get("/v1/stream")
async def owner_stream(request: web.Request) -> web.StreamResponse:
    """``event: job`` with the job (as ``GET /v1/jobs/{id}`` shows it) whenever one of the caller's
    ``limit`` newest jobs changes: a new event, a status change, a delivery attempt. All of them once
    on connect, so a reconnecting client starts from a full picture. Never ends by itself."""
    limit = _limit(request)
    owner = request[OWNER]
    redis = request.app[REDIS]
    store = request.app[STORE]
    # everything registered up to the index's newest entry now is covered by the first listing
    top: list[tuple[str, dict[str, str]]] = await redis.xrevrange(keys.JOBS_INDEX, "+", "-", 1)
    newest = top[0][0] if top else "0-0"
    jobs, _ = await owned_jobs(store, owner, limit, None)
    watched: dict[str, float] = {job["id"]: float(job.get("created") or 0) for job in jobs}
    prints: dict[str, tuple[Any, ...]] = {}
    response = await _open_stream(request)
    loop = asyncio.get_running_loop()
    next_keepalive = loop.time() + KEEPALIVE_INTERVAL
    try:
        while True:
            # jobs registered since the last look
            fresh: list[tuple[str, dict[str, str]]] = await redis.xrange(keys.JOBS_INDEX, f"({newest}", "+", _MAX_SCAN)
            if fresh:
                newest = fresh[-1][0]
                async with redis.pipeline(transaction=False) as pipe:
                    for _, entry in fresh:
                        pipe.hget(keys.job(entry["j"]), "owner")
                    owners = await pipe.execute()
                for (entry_id, entry), job_owner in zip(fresh, owners, strict=True):
                    if job_owner == owner:
                        watched[entry["j"]] = float(entry_id.split("-", 1)[0])
                if len(watched) > limit:
                    watched = dict(sorted(watched.items(), key=lambda item: item[1], reverse=True)[:limit])
            order = sorted(watched, key=lambda jid: watched[jid])  # oldest first: the newest ends on top
            async with redis.pipeline(transaction=False) as pipe:
                for jid in order:
                    pipe.hmget(keys.job(jid), _FINGERPRINT_FIELDS)
                    pipe.llen(keys.job_attempts(jid))
                replies = await pipe.execute()
            for index, jid in enumerate(order):
                fields, attempts = replies[2 * index], replies[2 * index + 1]
                if fields[0] != owner:  # expired
                    watched.pop(jid, None)
                    prints.pop(jid, None)
                    continue
                fingerprint = (*fields, attempts)
                if prints.get(jid) == fingerprint:
                    continue
                job = await store.job(jid)
                if job is None:
                    continue
                prints[jid] = fingerprint
                view = await store.job_view(job)
                await response.write(sse_frame(None, "job", json.dumps(view, separators=(",", ":"))))
                next_keepalive = loop.time() + KEEPALIVE_INTERVAL
            idle = await _idle_turn(request, response, next_keepalive)
            if idle is None:
                break
            next_keepalive = idle
    except ConnectionResetError:
        pass
    return response


# -- GET /v1/dead-letters ---------------------------------------------------------------------


@routes.get("/v1/dead-letters")
async def dead_letters(request: web.Request) -> web.Response:
    """The caller's dead-lettered events (delivery schedule exhausted), newest first."""
    limit = _limit(request)
    owner = request[OWNER]
    redis = request.app[REDIS]
    dead: list[tuple[str, float]] = await redis.zrevrange(keys.DEAD_LETTERS, 0, _DEAD_SCAN - 1, withscores=True)
    if not dead:
        return web.json_response({"deadLetters": []})
    async with redis.pipeline(transaction=False) as pipe:
        for event_id, _ in dead:
            pipe.hmget(keys.event(event_id), ["job", "type", "seq", "attempts"])
        events = await pipe.execute()
    job_ids = sorted({row[0] for row in events if row[0]})
    async with redis.pipeline(transaction=False) as pipe:
        for jid in job_ids:
            pipe.hget(keys.job(jid), "owner")
        owners = dict(zip(job_ids, await pipe.execute(), strict=True))
    out: list[dict[str, Any]] = []
    for (event_id, score), (jid, event_type, seq, attempts) in zip(dead, events, strict=True):
        if jid and owners.get(jid) == owner:
            out.append(
                {
                    "eventId": event_id,
                    "jobId": jid,
                    "type": event_type,
                    "sequence": int(seq or 0),
                    "attempts": int(attempts or 0),
                    "deadDateTime": isoformat(score / 1000),
                }
            )
            if len(out) == limit:
                break
    return web.json_response({"deadLetters": out})
