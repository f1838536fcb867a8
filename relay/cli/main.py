"""The ``relay`` command: ``serve``, ``worker``, ``dev``, ``demo``, ``simulate``, ``jobs``.

The composition root: the commands that run a worker import :mod:`workers` when they run, so importing
:mod:`relay` never imports :mod:`workers` (whose imports flow ``workers -> relay``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Sequence

import structlog

from relay import __version__, logs, metrics
from relay.cli.dev import run_dev, start_api
from relay.cli.devstate import dev_state
from relay.cli.jobs import add_jobs_parser
from relay.settings import ConfigError, Settings
from relay.store.embedded import EmbeddedRedis

__all__ = ["main"]

log = structlog.stdlib.get_logger("relay.cli")


def _settings() -> Settings:
    settings = Settings.from_env()
    logs.configure(settings.log_format)
    for line in settings.deprecations:
        log.warning("deprecated setting", detail=line)
    for line in settings.warnings:
        log.warning("weak setting", detail=line)
    _event_loop(settings.event_loop)
    return settings


def _event_loop(choice: str) -> None:
    """uvloop for the loops made from now on, where it is installed (``auto``) or asked for; else asyncio's."""
    if choice == "asyncio":
        return
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("RELAY_EVENT_LOOP=uvloop: uvloop is not installed (pip install uvloop)") from None
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _tune_gc() -> None:
    """For the long-running processes: what was loaded at start is never collected again (``freeze``),
    and young objects are collected every 20,000 allocations instead of 700. Requests, polls and
    deliveries make many short-lived objects and few cycles; the collector's passes over them were
    a measurable share of the CPU (see docs/performance.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def cmd_serve(_: argparse.Namespace) -> int:
    settings = _settings()
    settings.check_serving()
    _tune_gc()
    log.info("api starting", host=settings.host, port=settings.port, version=__version__)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    """The API until SIGINT or SIGTERM; then requests in flight get API_SHUTDOWN_TIMEOUT to finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = await start_api(settings)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def cmd_worker(_: argparse.Namespace) -> int:
    settings = _settings()
    settings.check_signing()
    settings.check_sealing()
    _tune_gc()
    if settings.worker_metrics_port:
        metrics.serve_worker_metrics(settings.worker_metrics_port, settings.host)  # and /healthz
        log.info("worker metrics served", port=settings.worker_metrics_port, host=settings.host)
    asyncio.set_event_loop(asyncio.new_event_loop())
    from workers.main import create_worker  # the composition root starts the worker

    create_worker(settings).run()
    return 0


def _dev_secrets(settings: Settings) -> Settings:
    """What ``relay dev`` is not given, its sealing key and signing secret, from the state it keeps (made once)."""
    if settings.encryption_keys and settings.signing_secrets:
        return settings
    state = dev_state()
    log.info("relay dev state", path=str(state.path), holds="the sealing key and signing secret it made")
    if not settings.encryption_keys:
        settings = settings.replace(encryption_keys=(state.encryption_key,))
    if not settings.signing_secrets:
        settings = settings.replace(signing_secrets=(state.signing_secret,))
        print(
            f"RELAY_SIGNING_SECRETS not set; events are signed with this secret, kept in {state.path}:\n"
            f"  {state.signing_secret}",
            flush=True,
        )
    return settings


def cmd_dev(_: argparse.Namespace) -> int:
    settings = _dev_secrets(_settings())
    settings.check_serving()
    embedded: EmbeddedRedis | None = None
    if settings.redis_url is None:
        embedded = EmbeddedRedis()
        settings = settings.replace(redis_url=embedded.start())
        log.info("embedded redis started", port=embedded.port, persistence="none: state ends with this process")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_dev(settings, stop)

    try:
        asyncio.run(main())
    finally:
        if embedded is not None:
            embedded.cleanup()
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from relay.simulator import run_simulator

    logs.configure(os.environ.get("RELAY_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json"))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator(args.host, args.port, args.token, args.token_ttl))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from relay.cli.demo import run_demo

    code: int = asyncio.run(run_demo(action=args.action, fail=args.fail, duration=args.duration, long=args.long))
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay", description="Microsoft Graph long-running actions to signed webhooks."
    )
    parser.add_argument("--version", action="version", version=f"relay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="the HTTP API only").set_defaults(func=cmd_serve)
    sub.add_parser("worker", help="one arq worker process only").set_defaults(func=cmd_worker)
    sub.add_parser("dev", help="API + worker in one process; embedded Redis when REDIS_URL is unset").set_defaults(
        func=cmd_dev
    )
    demo = sub.add_parser("demo", help="a self-contained tour with a live progress bar")
    demo.add_argument("--action", choices=["copy", "upload"], default="copy", help="the long-running action to start")
    demo.add_argument("--fail", action="store_true", help="make the copy fail, to see job.failed")
    demo.add_argument("--duration", type=float, default=8.0, help="seconds the simulated action takes")
    demo.add_argument(
        "--long",
        action="store_true",
        help="a copy that outlives its token: relay asks for a fresh one, the app PATCHes it",
    )
    demo.set_defaults(func=cmd_demo)
    sim = sub.add_parser("simulate", help="the Graph long-running-action simulator as a standalone server")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8081)
    sim.add_argument("--token", default="sim-token", help="bearer token the simulated Graph accepts")
    sim.add_argument(
        "--token-ttl",
        type=float,
        default=None,
        help="seconds until --token expires (401 from then on), and the lifetime of tokens from POST /sim/tokens",
    )
    sim.set_defaults(func=cmd_simulate)
    add_jobs_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"relay: configuration error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
