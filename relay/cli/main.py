"""The ``relay`` command: ``serve``, ``worker``, ``dev``, ``demo``, ``simulate``, ``listen``, ``jobs``.

The composition root: the commands that run a worker import :mod:`workers` when they run, so importing
:mod:`relay` never imports :mod:`workers` (whose imports flow ``workers -> relay``). The API, too, is imported by
the commands that serve it: a command that cannot start says so before a second of imports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
from collections.abc import Sequence

import structlog

from relay import __version__, logs, metrics
from relay.cli.devstate import dev_state
from relay.cli.jobs import add_jobs_parser
from relay.cli.listen import add_listen_parser
from relay.cli.startup import StartupError, bind_refusal, check_redis, listen
from relay.config.redis_url import is_cluster_url, redis_where
from relay.config.settings import ConfigError, Settings
from relay.core.schema import write_legacy_names
from relay.store.embedded import EmbeddedRedis

__all__ = ["main"]

log = structlog.stdlib.get_logger("relay.cli")


def _settings() -> Settings:
    settings = Settings.from_env()
    write_legacy_names(settings.store_legacy_format)  # before a record is made or a script composed
    logs.configure(settings.log_format)
    logs.keep_out(settings.secret_values())
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


def _listen(settings: Settings) -> list[socket.socket]:
    return listen(settings.host, settings.port, host_option="RELAY_HOST", port_option="RELAY_PORT")


def _check_redis(settings: Settings) -> str:
    """Redis answers (its version), or a StartupError saying why not; an unreachable one is waited for a while."""

    def waiting(where: str, reason: str) -> None:
        log.warning("waiting for redis", redis=where, reason=reason, gives_up_in_s=settings.redis_startup_wait)

    version = check_redis(settings.effective_redis_url, wait=settings.redis_startup_wait, waiting=waiting)
    if settings.arq_redis_url is not None:
        check_redis(settings.arq_redis_url, wait=settings.redis_startup_wait, waiting=waiting)
    return version


def _check_arq(settings: Settings) -> None:
    """arq (DriveItem resolution retries) needs one Redis: on a cluster, a Redis of its own (docs/operations.md)."""
    if settings.arq_redis_url is None and is_cluster_url(settings.effective_redis_url):
        raise StartupError(
            "REDIS_URL is a Redis Cluster's, where arq (DriveItem resolution retries) cannot run: set "
            "RELAY_ARQ_REDIS_URL to a plain or Sentinel Redis for its queue (docs/operations.md#redis-cluster)"
        )


def cmd_serve(_: argparse.Namespace) -> int:
    settings = _settings()
    settings.check_serving()
    _check_arq(settings)
    sockets = _listen(settings)
    version = _check_redis(settings)
    _tune_gc()
    log.info(
        "api listening",
        listen=f"http://{settings.host}:{sockets[0].getsockname()[1]}",
        redis=redis_where(settings.effective_redis_url),
        redis_version=version,
        version=__version__,
    )
    asyncio.run(_serve(settings, sockets))
    log.info("api stopped")
    return 0


async def _serve(settings: Settings, sockets: list[socket.socket]) -> None:
    """The API until SIGINT or SIGTERM; then requests in flight get API_SHUTDOWN_TIMEOUT to finish."""
    from relay.cli.dev import start_api

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = await start_api(settings, sockets)
    _return_freed_heap()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _return_freed_heap() -> None:
    """Hand the C heap's free pages back to the system once start-up is over (glibc's ``malloc_trim``): what the
    imports and the app's construction freed stays resident otherwise, ~1 MiB of ``relay serve`` at rest
    (docs/performance.md, "Memory"). Elsewhere (musl, macOS: no such function) nothing is done."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _worker_metrics(settings: Settings) -> None:
    if not settings.worker_metrics_port:
        return
    try:
        metrics.serve_worker_metrics(  # and /healthz
            settings.worker_metrics_port, settings.host, read_timeout=settings.api_read_timeout
        )
    except OSError as exc:
        refusal = bind_refusal(
            exc,
            settings.host,
            settings.worker_metrics_port,
            host_option="RELAY_HOST",
            port_option="RELAY_WORKER_METRICS_PORT (0: no metrics port)",
        )
        raise StartupError(f"worker metrics: {refusal}") from None
    log.info("worker metrics served", port=settings.worker_metrics_port, host=settings.host)


def cmd_worker(_: argparse.Namespace) -> int:
    settings = _settings()
    settings.check_signing()
    settings.check_sealing()
    _check_arq(settings)
    _check_redis(settings)
    from workers.main import create_worker  # the composition root starts the worker (and registers its metrics)

    _tune_gc()
    _worker_metrics(settings)
    asyncio.set_event_loop(asyncio.new_event_loop())
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
    logs.keep_out(settings.secret_values())  # the key and secret it made: printed once above, never logged
    return settings


def _embedded_redis() -> tuple[EmbeddedRedis, str]:
    embedded = EmbeddedRedis()
    try:
        url = embedded.start()
    except RuntimeError as exc:
        embedded.cleanup()
        raise StartupError(f"cannot start the embedded Redis ({exc}); install redis-server, or set REDIS_URL") from None
    log.info("embedded redis started", port=embedded.port, persistence="none: state ends with this process")
    return embedded, url


def cmd_dev(_: argparse.Namespace) -> int:
    from relay.cli.dev import run_dev

    settings = _dev_secrets(_settings())
    settings.check_serving()
    _check_arq(settings)
    sockets = _listen(settings)
    embedded: EmbeddedRedis | None = None
    if settings.redis_url is None:
        embedded, url = _embedded_redis()
        settings = settings.replace(redis_url=url)
    else:
        _check_redis(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _stop_on, stop, sig)
        await run_dev(settings, stop, sockets=sockets)

    try:
        asyncio.run(main())
    finally:
        if embedded is not None:
            embedded.cleanup()
    log.info("relay dev stopped")
    return 0


def _stop_on(stop: asyncio.Event, sig: signal.Signals) -> None:
    if not stop.is_set():
        log.info("relay dev stopping", signal=sig.name)
    stop.set()


def cmd_simulate(args: argparse.Namespace) -> int:
    from relay.simulator import run_simulator

    logs.configure(os.environ.get("RELAY_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json"))
    sockets = listen(args.host, args.port, host_option="--host", port_option="--port")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator(args.host, args.port, args.token, args.token_ttl, sockets=sockets))
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
    add_listen_parser(sub)
    add_jobs_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"relay: configuration error: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the command took over its signals (e.g. waiting for Redis)
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
