"""Serving the API: aiohttp's runner with the read timeout its server lacks (slowloris).

aiohttp's server bounds the size of a request's head (8 KiB lines) but not the time it takes to arrive: a
client trickling one header line every few seconds holds its connection (and a file descriptor) until the
keep-alive timeout, an hour by default. :class:`ApiRunner` gives every request ``RELAY_API_READ_TIMEOUT``
seconds for its request line and headers, counted from the connection's start or from the first byte of a
later request on it; then the connection is answered ``408`` and closed. The body has the same time once
the handler reads it (:func:`relay.api.http.json_body`). Idle keep-alive connections keep aiohttp's own
timeout (:data:`KEEPALIVE_TIMEOUT`), which must stay above a reverse proxy's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["KEEPALIVE_TIMEOUT", "ApiRunner"]

#: how long an idle keep-alive connection stays open (aiohttp's ``run_app`` default)
KEEPALIVE_TIMEOUT = 75.0
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class _Protocol(RequestHandler):
    """aiohttp's request handler, closing a connection whose request head does not arrive in time.

    A head's deadline is kept as the time it began; one timer per connection watches it and is not cancelled
    when the head completes: when it fires with no head pending it lapses, with a later head pending it is set
    again for that head's deadline. So a kept-alive connection costs a timer per RELAY_API_READ_TIMEOUT, not a
    timer made and cancelled per request (17,000 instructions a request, counted by callgrind)."""

    __slots__ = ("_head_since", "_head_timeout", "_head_timer")

    def __init__(self, manager: web.Server, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_since: float | None = None  # when the request head still awaited began; None: none awaited

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_began()  # a connection that never sends its request is closed too

    def data_received(self, data: bytes) -> None:
        if self._head_since is None and not self._messages and not self._request_in_progress:
            # the first bytes of a later request on a kept-alive connection (between requests: no message queued,
            # none in progress): its head is timed only if they do not complete it (a whole head, the usual
            # case, costs no clock read and no timer)
            super().data_received(data)
            if not self._messages and not self._request_in_progress:
                self._head_began()
            return
        super().data_received(data)
        if self._head_since is not None and (self._messages or self._request_in_progress):
            self._head_since = None  # the head is complete: the handler has the request

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_since = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _head_began(self) -> None:
        self._head_since = self._loop.time()
        if self._head_timer is None:  # else the timer set for an earlier head fires first, and moves on to this one
            self._head_timer = self._loop.call_at(self._head_since + self._head_timeout, self._head_check)

    def _head_check(self) -> None:
        self._head_timer = None
        if self._head_since is None:  # no head awaited now: the next one sets a timer again
            return
        deadline = self._head_since + self._head_timeout
        if deadline > self._loop.time():  # a later head than the one this timer was set for
            self._head_timer = self._loop.call_at(deadline, self._head_check)
            return
        self._head_since = None
        waiting = self._waiter is not None and not self._waiter.done()
        if waiting and self.transport is not None:  # still no complete request head
            self.transport.write(_TIMED_OUT)
            self.force_close()


class _Server(web.Server):
    """aiohttp's low-level server, making :class:`_Protocol` handlers."""

    head_timeout: float

    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, head_timeout=self.head_timeout, **self._kwargs)


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` whose connections get ``read_timeout`` seconds for each request head."""

    def __init__(self, app: web.Application, *, read_timeout: float, **kwargs: Any) -> None:
        # lingering: after an answer to a request whose body is still arriving, the rest is read for at most this long
        super().__init__(app, keepalive_timeout=KEEPALIVE_TIMEOUT, lingering_time=read_timeout, **kwargs)
        self._read_timeout = read_timeout

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # the application's own, with its handler and startup done
        server.__class__ = _Server  # the same object, making relay's handlers: nothing else of it changes
        assert isinstance(server, _Server)
        server.head_timeout = self._read_timeout
        return server
