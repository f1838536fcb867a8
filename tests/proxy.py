"""A loopback TCP proxy in front of Redis that loses replies on purpose: the request is forwarded (Redis runs
it), then the connection is dropped before its answer comes back. Used by tests/test_lost_reply.py and
``make faults`` (tests/fault_runs.py).

``cut_on``: bytes that mark the requests whose reply to lose (``cuts_left`` of them); ``rate``: the share of
every other reply to lose, at random; ``delay``: seconds added to every reply (a slow network).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

__all__ = ["CuttingProxy"]


@dataclass
class CuttingProxy:
    target_port: int
    cut_on: bytes = b""
    cuts_left: int = 0
    rate: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    #: monotonic times of the replies lost
    cuts: list[float] = field(default_factory=list)
    #: of those, the replies to a request marked by ``cut_on``
    marked: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        cut = asyncio.Event()  # set when a reply is to be lost: both sides are closed
        armed = asyncio.Event()  # set when the request just forwarded is one whose reply is lost
        down = asyncio.create_task(self._down(up_reader, writer, armed, cut))
        try:
            while not cut.is_set():
                data = await reader.read(65536)
                if not data:
                    break
                lose = (self.cut_on and self.cuts_left > 0 and self.cut_on in data) or (
                    self.rate and self.rng.random() < self.rate
                )
                if lose and self.cut_on and self.cut_on in data and self.cuts_left > 0:
                    self.cuts_left -= 1
                    self.marked += 1
                up_writer.write(data)
                await up_writer.drain()
                if lose:
                    armed.set()
                    await cut.wait()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            down.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await down
            for w in (writer, up_writer):
                w.close()
            self._tasks.discard(task)

    async def _down(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, armed: asyncio.Event, cut: asyncio.Event
    ) -> None:
        low, high = self.delay
        while True:
            data = await up_reader.read(65536)
            if not data:
                cut.set()
                return
            if armed.is_set():  # the answer to the marked request (and anything with it) never arrives
                self.cuts.append(time.monotonic())
                cut.set()
                writer.transport.abort()
                return
            if high:
                await asyncio.sleep(self.rng.uniform(low, high))
            writer.write(data)
            await writer.drain()
