"""Server-Sent Events: the framing, and the life of a stream (keep-alives, the client leaving, shutdown)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator

from aiohttp import web

from relay.api.problems import ProblemError
from relay.api.typedefs import SETTINGS

__all__ = [
    "KEEPALIVE_INTERVAL",
    "POLL_INTERVAL",
    "disconnected",
    "frame",
    "idle_turn",
    "open_stream",
    "pause",
    "setup",
    "slot",
]

#: how often streams and long-polls look at Redis for something new (seconds)
POLL_INTERVAL = 0.5
#: a comment line is sent this often on an idle stream so proxies keep it open (seconds)
KEEPALIVE_INTERVAL = 15.0

_STOPPING = web.AppKey("live_stopping", asyncio.Event)
#: open streams per owner in this process (RELAY_TENANT_MAX_STREAMS)
_OPEN = web.AppKey("live_open", collections.Counter[str])
_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def setup(app: web.Application) -> None:
    """End open streams when the app shuts down (not after its timeout)."""
    app[_STOPPING] = asyncio.Event()
    app[_OPEN] = collections.Counter()
    app.on_shutdown.append(_stop_streams)


async def _stop_streams(app: web.Application) -> None:
    app[_STOPPING].set()


@contextlib.contextmanager
def slot(request: web.Request, owner: str) -> Iterator[None]:
    """Hold one of the owner's open streams for the life of a stream or long-poll; 429 when it has all of them open.

    Per API process; without API tokens (one app on loopback) there is no limit.
    """
    settings = request.app[SETTINGS]
    limit = settings.tenant_max_streams if settings.api_tokens else 0
    counts = request.app[_OPEN]
    if limit and counts[owner] >= limit:
        message = f"this API token has RELAY_TENANT_MAX_STREAMS ({limit}) streams open here; close one first"
        raise ProblemError(429, "Too Many Streams", message, headers={"Retry-After": "5"})
    counts[owner] += 1
    try:
        yield
    finally:
        counts[owner] -= 1
        if counts[owner] <= 0:
            del counts[owner]


def frame(event_id: str | None, event_type: str, data: str, extra: dict[str, str] | None = None) -> bytes:
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


async def open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers=_HEADERS)
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    return response


def disconnected(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def pause(app: web.Application, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when the app is shutting down."""
    stopping = app[_STOPPING]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


async def idle_turn(request: web.Request, response: web.StreamResponse, next_keepalive: float) -> float | None:
    """Between two looks at Redis: a keep-alive comment when one is due, then a pause.

    Returns when the next keep-alive is due, or None when the stream should end (client gone, app stopping).
    """
    if disconnected(request):
        return None
    loop = asyncio.get_running_loop()
    if loop.time() >= next_keepalive:
        await response.write(b": keep-alive\n\n")
        next_keepalive = loop.time() + KEEPALIVE_INTERVAL
    if await pause(request.app, POLL_INTERVAL):
        return None
    return next_keepalive
