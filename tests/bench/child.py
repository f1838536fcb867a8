"""``python -m tests.bench.child [--loop asyncio|uvloop] <kind> ...``: one helper process of the bench.

Servers (``sim``, ``receiver``, ``hello``, ``floor``) print ``port <n>`` and serve until terminated; load
generators (``loadgen``, ``getloop``, ``postloop``, ``floorloop``, ``bulk``) print one JSON line with what
they did. Each runs in a process of its own, so the bench compares one relay process with one plain aiohttp
process, on the same event loop implementation (``--loop``). The floors are in :mod:`tests.bench.floors`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tests.bench import floors, loadgen, servers

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], loop: str) -> T:
    """Run ``coro`` on the standard asyncio loop or on uvloop."""
    if loop == "uvloop":
        import uvloop

        result: T = uvloop.run(coro)
        return result
    return asyncio.run(coro)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.child")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    sub = parser.add_subparsers(dest="kind", required=True)
    for kind in ("sim", "receiver", "hello"):
        sub.add_parser(kind).add_argument("--port", type=int, default=0)
    p = sub.add_parser("floor")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--redis-url", required=True)
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
    p = sub.add_parser("floorloop")
    p.add_argument("--method", choices=("GET", "POST"), required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--url", default="", help="POST: where every body goes (GET: each stored URL is polled)")
    p.add_argument("--duration", type=float, default=0.0, help="GET: seconds to poll for")
    p.add_argument("--concurrency", type=int, default=200)
    p = sub.add_parser("bulk")
    p.add_argument("--url", required=True)
    p.add_argument("--template", required=True, help="JSON template; {url} is replaced by each line of --values")
    p.add_argument("--values", required=True, help="a file, one value a line")
    p.add_argument("--token", required=True)
    p.add_argument("--concurrency", type=int, default=64)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result: dict[str, Any] | None = None
    with contextlib.suppress(KeyboardInterrupt):
        if args.kind == "sim":
            run(servers.serve_sim(args.port), args.loop)
        elif args.kind == "receiver":
            run(servers.serve(servers.CountingReceiver().app(), args.port), args.loop)
        elif args.kind == "hello":
            run(servers.serve(servers.hello_app(), args.port), args.loop)
        elif args.kind == "floor":
            run(servers.serve(floors.floor_app(args.redis_url), args.port), args.loop)
        elif args.kind == "loadgen":
            coro = loadgen.loadgen(args.url, args.body, args.concurrency, args.warmup, args.duration)
            result = run(coro, args.loop)
        elif args.kind == "getloop":
            urls = [line.strip() for line in Path(args.urls_file).read_text().splitlines() if line.strip()]
            result = run(loadgen.getloop(urls, args.concurrency, args.duration), args.loop)
        elif args.kind == "postloop":
            result = run(loadgen.postloop(args.url, args.size, args.concurrency, args.count), args.loop)
        elif args.kind == "floorloop":
            coro = floors.floor_loop(
                args.method, args.redis_url, args.concurrency, url=args.url, duration=args.duration
            )
            result = run(coro, args.loop)
        elif args.kind == "bulk":
            values = [line.strip() for line in Path(args.values).read_text().splitlines() if line.strip()]
            result = run(loadgen.bulk(args.url, args.template, values, args.token, args.concurrency), args.loop)
    if result is not None:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
