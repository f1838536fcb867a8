"""Slowloris: a request head or body trickled byte by byte does not hold a connection open (relay/api/server.py).

The API is started the way ``relay serve`` and ``relay dev`` start it (``start_api``), on a real socket; the
client below is a raw TCP connection that keeps trickling while it waits to be cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from relay.cli.dev import start_api
from relay.config.settings import Settings
from tests.helpers import free_port, with_settings

LIMIT = 0.5
#: how much later than the limit a cut-off may come on a loaded machine
SLACK = 2.5


@pytest.fixture
async def port(settings: Settings, redis: Redis) -> AsyncIterator[int]:
    chosen = free_port()
    runner = await start_api(with_settings(settings, port=chosen, api_read_timeout=LIMIT, access_log=False))
    yield chosen
    await runner.cleanup()


async def _trickle(writer: asyncio.StreamWriter, piece: bytes) -> None:
    """One ``piece`` every 0.1 s, until the server closes the connection."""
    with contextlib.suppress(ConnectionError, OSError):
        while True:
            await asyncio.sleep(0.1)
            writer.write(piece)
            await writer.drain()


async def _until_closed(port: int, opening: bytes, piece: bytes | None) -> tuple[float, bytes]:
    """(seconds the server kept the connection, what it answered), trickling ``piece`` after ``opening``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(opening)
    feeder = asyncio.create_task(_trickle(writer, piece)) if piece is not None else None
    answer = b""
    try:
        async with asyncio.timeout(LIMIT + SLACK + 5):
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):
                    answer += chunk
    finally:
        if feeder is not None:
            feeder.cancel()
        writer.close()
    return time.monotonic() - started, answer


async def test_a_trickled_request_head_is_cut_off(port: int) -> None:
    held, answer = await _until_closed(port, b"GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: 1\r\n")
    assert held < LIMIT + SLACK, f"a head trickled a line every 0.1 s held the connection {held:.1f} s"
    assert answer.startswith(b"HTTP/1.1 408 "), answer


async def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    held, answer = await _until_closed(port, b"", None)
    assert held < LIMIT + SLACK and answer.startswith(b"HTTP/1.1 408 "), (held, answer)


async def test_a_trickled_body_is_answered_408_and_the_connection_closed(port: int) -> None:
    head = b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: 900\r\n\r\n{"
    held, answer = await _until_closed(port, head, b" ")
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"RELAY_API_READ_TIMEOUT" in answer and b"application/problem+json" in answer
    # the body's limit, then at most as long again to drain the rest (aiohttp's lingering close)
    assert held < 2 * LIMIT + SLACK, f"a body trickled a byte every 0.1 s held the connection {held:.1f} s"


async def test_a_later_request_on_a_kept_alive_connection_is_timed_from_its_first_byte(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await asyncio.sleep(LIMIT / 2)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(LIMIT * 1.5)  # idle between requests: keep-alive's own (longer) timeout
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        await writer.drain()
        await asyncio.sleep(LIMIT / 2)
        writer.write(b"Host: 127.0.0.1\r\n\r\n")  # the rest of the head within the limit: answered
        answers = b""  # the rest of the first answer, and the second
        while not answers.endswith(b'{"status":"ok"}') or answers.count(b"HTTP/1.1 200 ") < 1:
            answers += await asyncio.wait_for(reader.read(65536), 5)
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # a third one that never ends
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(65536), LIMIT + SLACK + 5)
        assert rest.endswith(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), rest
        assert time.monotonic() - started < LIMIT + SLACK
    finally:
        writer.close()


async def test_a_stream_outlives_the_read_timeout(port: int) -> None:
    """The limit is on reading requests: a Server-Sent Events stream stays open past it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(LIMIT * 3)
        assert not reader.at_eof()
        assert writer.transport is not None and not writer.transport.is_closing()
    finally:
        writer.close()


async def test_requests_in_quick_succession_are_not_cut_off_by_an_earlier_heads_timer(port: int) -> None:
    """One timer watches a connection's heads and is not cancelled when a head completes: firing while a later
    head is under way, it must move on to that head's deadline, not cut it off; a head that then stalls is."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        step = LIMIT / 4
        ends = time.monotonic() + 4 * LIMIT
        answered = 0
        while time.monotonic() < ends:  # each head sent in two halves, the second step later: under way often
            writer.write(b"GET /healthz HTTP/1.1\r\n")
            await writer.drain()
            await asyncio.sleep(step)
            writer.write(b"Host: 127.0.0.1\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), 5)
            assert status.startswith(b"HTTP/1.1 200 "), (answered, status)
            while (await asyncio.wait_for(reader.readline(), 5)) != b"\r\n":
                pass
            assert await asyncio.wait_for(reader.readexactly(len(b'{"status":"ok"}')), 5) == b'{"status":"ok"}'
            answered += 1
        assert answered >= 8
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # and one that never ends
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(65536), LIMIT + SLACK + 5)
        assert rest.endswith(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), rest
        assert LIMIT * 0.9 < time.monotonic() - started < LIMIT + SLACK
    finally:
        writer.close()
