"""``relay dev`` (API and worker in one process) and what ``relay demo`` shares with it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import structlog
from aiohttp import web

from relay import __version__, logs
from relay.api.app import create_app
from relay.api.server import ApiRunner
from relay.cli.devstate import new_secret
from relay.config.settings import Settings

__all__ = ["API_SHUTDOWN_TIMEOUT", "access_log", "new_secret", "run_dev", "start_api"]

log = structlog.stdlib.get_logger("relay.cli")

#: the API gets this long to finish in-flight requests on SIGTERM; keep under the pod's grace period
API_SHUTDOWN_TIMEOUT = 20.0
#: on a stop, how long relay dev waits for a worker that is still starting (connecting to Redis) before closing it
WORKER_START_WAIT = 15.0


def access_log(settings: Settings) -> dict[str, Any]:
    """aiohttp's access-log arguments: relay's structured line, or none (RELAY_ACCESS_LOG=off)."""
    return {"access_log_class": logs.AccessLogger, "access_log": logs.ACCESS_LOG if settings.access_log else None}


async def start_api(settings: Settings, sockets: list[socket.socket] | None = None) -> web.AppRunner:
    """The API listening on ``sockets`` (bound by the caller, see relay/cli/startup.py), else on
    RELAY_HOST:RELAY_PORT, with RELAY_API_READ_TIMEOUT on every request's head and body (relay/api/server.py);
    ``cleanup()`` stops it, letting requests in flight finish."""
    runner = ApiRunner(
        create_app(settings),
        read_timeout=settings.api_read_timeout,
        shutdown_timeout=API_SHUTDOWN_TIMEOUT,
        **access_log(settings),
    )
    await runner.setup()
    try:  # the app's startup opened sessions and clients: a site that cannot start leaves nothing open
        if sockets is None:
            await web.TCPSite(runner, settings.host, settings.port).start()
        for sock in sockets or ():
            await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def run_dev(
    settings: Settings,
    stop: asyncio.Event,
    *,
    ready: asyncio.Event | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """API and worker in one process until ``stop`` is set; the API on ``sockets`` when given."""
    runner = await start_api(settings, sockets)
    try:
        from workers.main import create_worker  # the composition root starts the worker

        worker = create_worker(settings, handle_signals=False)
        started = asyncio.Event()
        worker.ctx["started"] = started
        worker_task = asyncio.create_task(worker.async_run())
        log.info("relay dev running", listen=f"http://{settings.host}:{settings.port}", version=__version__)
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            # a stop that comes while the worker is still starting (the API answers first) waits for its start,
            # so its shutdown runs whole: loops stopped, writes drained, its summary line logged
            waiting = asyncio.ensure_future(started.wait())
            await asyncio.wait({worker_task, waiting}, timeout=WORKER_START_WAIT, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            await worker.close()
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
    finally:
        await runner.cleanup()
