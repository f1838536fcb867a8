"""Helper processes for ``tests/bench.py``, each run as ``python -m tests.bench_servers <kind> ...``.

Servers (``sim``, ``receiver``, ``hello``) print ``port <n>`` on their first stdout line once they
listen on 127.0.0.1, then serve until terminated. Load generators (``loadgen``, ``getloop``,
``postloop``) run a bounded loop and print one JSON line with what they did. Each runs in its own
process so the benchmark compares one relay process against one plain aiohttp process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web

from relay.simulator import Simulator

__all__ = ["BenchSimulator", "main"]


# -- servers ----------------------------------------------------------------------------------------


class BenchSimulator(Simulator):
    """The Graph simulator plus bulk creation and per-operation poll timestamps (when recording)."""

    def __init__(self) -> None:
        super().__init__(seed=11)
        self.recording = False
        self.poll_times: dict[str, list[float]] = {}
        self.created_wall: dict[str, float] = {}
        self.item_times: dict[str, float] = {}  # first DriveItem GET per operation (when recording)

    async def _monitor(self, request: web.Request) -> web.StreamResponse:
        if self.recording:
            self.poll_times.setdefault(request.match_info["op_id"].upper(), []).append(time.time())
        return await super()._monitor(request)

    async def _item(self, request: web.Request) -> web.Response:
        if self.recording:
            op = self._by_resource.get(request.match_info["item_id"])
            if op is not None:
                self.item_times.setdefault(op.id, time.time())
        return await super()._item(request)

    async def _bulk_create(self, request: web.Request) -> web.Response:
        """{"ops": [{knob: value}...], "record": bool} -> {"ops": [{"id", "monitorUrl", "resourceId", "created"}]}."""
        body = await request.json()
        if "record" in body:
            self.recording = bool(body["record"])
        out = []
        for knobs in body.get("ops", []):
            op = self.create(**knobs)
            wall = time.time() - (time.monotonic() - op.created)
            self.created_wall[op.id] = wall
            out.append({"id": op.id, "monitorUrl": op.monitor_url, "resourceId": op.resource_id, "created": wall})
        return web.json_response({"ops": out})

    async def _bulk_polls(self, request: web.Request) -> web.Response:
        """{"ids": [...]} -> {"ops": {id: {"polls", "created", "duration", "times"}}} (all ops without ids)."""
        body = await request.json() if request.can_read_body else {}
        ids = body.get("ids") or list(self.operations)
        out: dict[str, Any] = {}
        for op_id in ids:
            op = self.operations.get(op_id)
            if op is None:
                continue
            out[op_id] = {
                "polls": op.polls,
                "created": self.created_wall.get(op_id),
                "duration": op.options.duration,
                "times": self.poll_times.get(op_id, []),
                "item": self.item_times.get(op_id),
            }
        return web.json_response({"ops": out, "total": self.total_polls})

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/bench/create", self._bulk_create)
        app.router.add_post("/bench/polls", self._bulk_polls)
        return app


class CountingReceiver:
    """Answers every POST 204 and records (time, kind, jobId) with cheap byte scans, no JSON parsing."""

    _KINDS = ((b'{"type":"job.completed"', "c"), (b'{"type":"job.failed"', "f"), (b'{"type":"job.progress"', "p"))

    def __init__(self) -> None:
        self.records: list[tuple[float, str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        kind = ""
        for prefix, short in self._KINDS:
            if body.startswith(prefix):
                kind = short
                break
        job = ""
        at = body.find(b'"jobId":"')
        if at >= 0:
            job = body[at + 9 : at + 41].decode(errors="replace")
        self.records.append((now, kind, job))
        return web.Response(status=204)

    async def dump(self, request: web.Request) -> web.Response:
        kinds = request.query.get("kinds")
        rows = self.records if not kinds else [r for r in self.records if r[1] in kinds]
        return web.json_response({"count": len(self.records), "records": rows})

    async def count(self, _: web.Request) -> web.Response:
        return web.json_response({"count": len(self.records)})

    async def reset(self, _: web.Request) -> web.Response:
        self.records = []
        return web.Response(status=204)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/bench/dump", self.dump)
        app.router.add_get("/bench/count", self.count)
        app.router.add_post("/bench/reset", self.reset)
        app.router.add_post("/{tail:.*}", self.handle)
        return app


async def _hello(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"hello": "world"}, status=201)


def hello_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/{tail:.*}", _hello)
    return app


async def serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    print(f"port {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def serve_sim(port: int) -> None:
    sim = BenchSimulator()
    app = sim.app()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    bound = runner.addresses[0][1]
    sim.base_url = f"http://127.0.0.1:{bound}"
    print(f"port {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


# -- load generators --------------------------------------------------------------------------------


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

        await asyncio.gather(*(one() for _ in range(concurrency)))
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


async def postloop(url: str, size: int, concurrency: int, count: int) -> dict[str, Any]:
    """POST ``count`` JSON bodies of ``size`` bytes with Standard-Webhooks-sized headers, ``concurrency`` at once."""
    filler = "x" * max(0, size - 12)
    body = ('{"pad":"' + filler + '"}').encode()[:size]
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


# -- entry point ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_servers")
    sub = parser.add_subparsers(dest="kind", required=True)
    for kind in ("sim", "receiver", "hello"):
        p = sub.add_parser(kind)
        p.add_argument("--port", type=int, default=0)
    p = sub.add_parser("loadgen")
    p.add_argument("--url", required=True)
    p.add_argument("--body", required=True, help="JSON template; {n} is replaced by a request counter")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=8.0)
    p = sub.add_parser("getloop")
    p.add_argument("--urls-file", required=True)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--duration", type=float, default=20.0)
    p = sub.add_parser("postloop")
    p.add_argument("--url", required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)

    result: dict[str, Any] | None = None
    with contextlib.suppress(KeyboardInterrupt):
        if args.kind == "sim":
            asyncio.run(serve_sim(args.port))
        elif args.kind == "receiver":
            asyncio.run(serve(CountingReceiver().app(), args.port))
        elif args.kind == "hello":
            asyncio.run(serve(hello_app(), args.port))
        elif args.kind == "loadgen":
            result = asyncio.run(loadgen(args.url, args.body, args.concurrency, args.warmup, args.duration))
        elif args.kind == "getloop":
            with open(args.urls_file) as fh:
                urls = [line.strip() for line in fh if line.strip()]
            result = asyncio.run(getloop(urls, args.concurrency, args.duration))
        elif args.kind == "postloop":
            result = asyncio.run(postloop(args.url, args.size, args.concurrency, args.count))
    if result is not None:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
