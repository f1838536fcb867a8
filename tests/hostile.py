"""A hostile HTTP peer on loopback: endless, slow, truncated, oversized and mislabelled answers."""

from __future__ import annotations

import asyncio
import gzip
import json

from aiohttp import web

STATUS = json.dumps({"status": "inProgress", "percentageComplete": 10.0}).encode()


async def endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=202, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"status": "inProgress", "pad": "')
    chunk = b"x" * 65536
    for _ in range(10_000):  # 640 MiB at most: far past any limit, still bounded
        await resp.write(chunk)
    return resp


async def slow(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=202, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    for byte in STATUS:
        await resp.write(bytes([byte]))
        await asyncio.sleep(0.5)
    return resp


async def huge_headers(_: web.Request) -> web.Response:
    return web.Response(status=202, body=STATUS, headers={"X-Junk": "y" * 100_000})


async def close_midway(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=202, headers={"Content-Type": "application/json", "Content-Length": "1000"})
    await resp.prepare(request)
    await resp.write(STATUS[:10])
    assert request.transport is not None
    request.transport.close()
    return resp


async def wrong_content_type(_: web.Request) -> web.Response:
    return web.Response(status=202, body=STATUS, content_type="text/html")


async def gzip_bomb(_: web.Request) -> web.Response:
    bomb = gzip.compress(b'{"status": "inProgress", "pad": "' + b"0" * (20 * 1024 * 1024) + b'"}')
    return web.Response(status=202, body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})


async def binary(_: web.Request) -> web.Response:
    return web.Response(status=200, body=bytes(range(256)) * 10, content_type="application/octet-stream")


ROUTES = {
    "/endless": endless,
    "/slow": slow,
    "/huge-headers": huge_headers,
    "/close": close_midway,
    "/wrong-content-type": wrong_content_type,
    "/gzip-bomb": gzip_bomb,
    "/binary": binary,
}


async def start_hostile() -> tuple[web.AppRunner, str]:
    app = web.Application()
    for path, handler in ROUTES.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"
