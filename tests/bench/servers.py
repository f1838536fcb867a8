"""The bench's servers, each run in a process of its own by :mod:`tests.bench.child`.

``sim`` (the Graph simulator with bulk creation and per-operation poll times), ``receiver`` (answers
every POST 204 and records what arrived, cheaply) and ``hello`` (the aiohttp hello world section 3
compares ``relay serve`` with); the ``floor`` server is in :mod:`tests.bench.floors`. Each prints
``port <n>`` on its first stdout line once it listens on 127.0.0.1, then serves until terminated.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from aiohttp import web

from relay.simulator import Simulator

__all__ = ["BenchSimulator", "CountingReceiver", "hello_app", "serve", "serve_sim"]


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
        """{"ids": [...]} -> {"ops": {id: {"polls", "created", "duration", "times", "item"}}} (all ops without ids)."""
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
    """Answers every POST 204 and records (time, kind, jobId, percentage) with byte scans, no JSON parsing."""

    _KINDS = ((b'{"type":"job.completed"', "c"), (b'{"type":"job.failed"', "f"), (b'{"type":"job.progress"', "p"))
    _PCT = b'"percentageComplete":'

    def __init__(self) -> None:
        self.records: list[tuple[float, str, str, float | None]] = []

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
        pct: float | None = None
        if kind == "p":
            at = body.find(self._PCT)
            if at >= 0:
                start = at + len(self._PCT)
                end = min(i for i in (body.find(b",", start), body.find(b"}", start), len(body)) if i >= 0)
                try:
                    pct = float(body[start:end])
                except ValueError:
                    pct = None
        self.records.append((now, kind, job, pct))
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


async def serve(app: web.Application, port: int, sim: BenchSimulator | None = None) -> None:
    """Serve ``app`` on 127.0.0.1 until SIGTERM/SIGINT; print ``port <n>`` once listening."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    bound = runner.addresses[0][1]
    if sim is not None:
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


async def serve_sim(port: int) -> None:
    sim = BenchSimulator()
    await serve(sim.app(), port, sim)
