"""The bench's load generators, each run in a process of its own by :mod:`tests.bench.child`.

Each runs a bounded loop and returns a JSON-able dict; ``loadgen`` also prints ``mark window-start`` and
``mark window-end`` lines as its measured window opens and closes, so the bench samples CPU times at the
same instants.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp

__all__ = ["bulk", "getloop", "loadgen", "padded_body", "postloop"]


def _mark(name: str) -> None:
    print(f"mark {name}", flush=True)


async def loadgen(url: str, body_template: str, concurrency: int, warmup: float, duration: float) -> dict[str, Any]:
    """POST ``body_template`` (``{n}`` replaced by a counter) with ``concurrency`` connections.

    Counts 2xx answers completed inside [warmup, warmup + duration] after the start.
    """
    counter = itertools.count()
    statuses: dict[int, int] = {}
    in_window = 0
    errors = 0
    latencies: list[float] = []
    start = time.monotonic()
    window_start, window_end = start + warmup, start + warmup + duration
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    headers = {"Content-Type": "application/json"}

    async def marks() -> None:
        await asyncio.sleep(max(0.0, window_start - time.monotonic()))
        _mark("window-start")
        await asyncio.sleep(max(0.0, window_end - time.monotonic()))
        _mark("window-end")

    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal in_window, errors
            while time.monotonic() < window_end:
                data = body_template.replace("{n}", str(next(counter))).encode()
                sent = time.monotonic()
                try:
                    async with session.post(url, data=data, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                except aiohttp.ClientError:
                    errors += 1
                    continue
                done = time.monotonic()
                statuses[status] = statuses.get(status, 0) + 1
                if window_start <= done <= window_end and 200 <= status < 300:
                    in_window += 1
                    latencies.append(done - sent)

        await asyncio.gather(marks(), *(one() for _ in range(concurrency)))
    latencies.sort()
    p50 = latencies[len(latencies) // 2] if latencies else None
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else None
    return {
        "ok_in_window": in_window,
        "rate": in_window / duration,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors,
        "p50_ms": p50 and round(p50 * 1000, 1),
        "p99_ms": p99 and round(p99 * 1000, 1),
    }


async def getloop(urls: list[str], concurrency: int, duration: float) -> dict[str, Any]:
    """GET the monitor URLs round robin with ``concurrency`` tasks for ``duration`` seconds, reading each body."""
    cycle = itertools.cycle(urls)
    done = 0
    errors = 0
    end = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal done, errors
            while time.monotonic() < end:
                try:
                    async with session.get(next(cycle), headers={"Accept": "application/json"}) as resp:
                        await resp.read()
                    done += 1
                except aiohttp.ClientError:
                    errors += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return {"requests": done, "errors": errors}


def padded_body(size: int) -> str:
    """A JSON body of ``size`` bytes, ``{"pad":"x...x"}`` (10 bytes around the filler): the POST loops send
    bodies of the events' size."""
    return ('{"pad":"' + "x" * max(0, size - 10) + '"}')[:size]


async def postloop(url: str, size: int, concurrency: int, count: int) -> dict[str, Any]:
    """POST ``count`` JSON bodies of ``size`` bytes with Standard-Webhooks-sized headers, ``concurrency`` at once."""
    body = padded_body(size).encode()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": "msg_" + "0" * 32,
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1," + "A" * 44,
    }
    remaining = itertools.count()
    ok = 0
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal ok, errors
            while next(remaining) < count:
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        if 200 <= resp.status < 300:
                            ok += 1
                except aiohttp.ClientError:
                    errors += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return {"ok": ok, "errors": errors}


async def bulk(url: str, template: str, values: list[str], token: str, concurrency: int) -> dict[str, Any]:
    """POST ``template`` once per value (``{url}`` replaced by it) with a Bearer token; the statuses seen."""
    it = iter(values)
    statuses: dict[int, int] = {}
    errors = 0
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal errors
            for value in it:
                data = template.replace("{url}", value).encode()
                try:
                    async with session.post(url, data=data, headers=headers) as resp:
                        await resp.read()
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                except aiohttp.ClientError:
                    errors += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return {
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors,
        "seconds": round(time.monotonic() - started, 2),
    }
