"""The bench's shared machinery: its Redis, the processes it starts (relay's and its helpers'), rows and notes.

Every section gets one :class:`Harness`. Processes it starts are stopped at the end of their section
(and, whatever happens, at the end of the run); their logs go to ``tmp``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
from redis.asyncio import Redis

from relay.core.crypto import Vault
from relay.store import keys
from relay.store.embedded import EmbeddedRedis
from relay.store.jobs import Store
from tests.bench.measure import Meter, Window, event_loop_of
from tests.bench.report import ROOT, Row

__all__ = ["ENCRYPTION_KEY", "SECRET", "Harness", "Helper", "Run", "free_port"]

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENCRYPTION_KEY = "nNqcPCpvx3IZAUiAbCEn2TuLHQ8EVELtuZXhwBEm1rg="


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Run:
    """One measured window of one side: operations done, their rate, and the CPU each process spent."""

    ops: float
    window: Window

    @property
    def rate(self) -> float:
        return self.ops / self.window.seconds if self.window.seconds > 0 else 0.0

    def us(self, name: str) -> float:
        return self.window.per_op_us(name, self.ops)


class Helper:
    """A load generator from tests/bench/child.py, running; ``on_mark`` is called for each ``mark`` line."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, on_mark: Callable[[str], Any] | None) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.name = name
        self._on_mark = on_mark
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        last = ""
        while line := (await self.proc.stdout.readline()).decode().strip():
            if line.startswith("mark "):
                if self._on_mark is not None:
                    self._on_mark(line[5:])
            else:
                last = line
        if await self.proc.wait() != 0 or not last:
            raise RuntimeError(f"load generator {self.name} failed with {self.proc.returncode}")
        result: dict[str, Any] = json.loads(last)
        return result

    async def result(self) -> dict[str, Any]:
        return await self._task

    async def stop(self) -> None:
        """Terminate it before its end (its result is then lost)."""
        if self.proc.returncode is None:
            self.proc.terminate()
        with contextlib.suppress(RuntimeError, json.JSONDecodeError):
            await self._task


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
        self.redis_server = EmbeddedRedis()
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.children: list[subprocess.Popen[bytes]] = []
        self.redis: Redis
        self.store: Store
        self.http: aiohttp.ClientSession
        self.vault = Vault((ENCRYPTION_KEY,))
        self.spawned = 0
        #: figures one section leaves for another (the ceiling uses the Redis costs of sections 1-3)
        self.costs: dict[str, dict[str, float]] = {}
        #: the event loop each kind of process ran on (from /proc/<pid>/maps)
        self.loops: dict[str, str] = {}

    async def open(self) -> None:
        self.redis_server.start()
        self.redis = Redis.from_url(self.redis_server.url, decode_responses=True)
        self.store = Store(self.redis, retention=7 * 86400, job_timeout=259200)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))

    async def close(self) -> None:
        await self.http.close()
        await self.redis.aclose()
        for proc in self.children:
            self.stop(proc)
        self.redis_server.cleanup()

    @property
    def redis_pid(self) -> int:
        assert self.redis_server.process is not None
        return self.redis_server.process.pid

    async def fresh_redis(self) -> None:
        await self.redis.flushall()

    # -- processes ----------------------------------------------------------------------------------

    def log_file(self, name: str) -> IO[bytes]:
        self.spawned += 1
        return open(self.tmp / f"{self.spawned:02d}-{name}.log", "wb")  # closed with the process

    def child_args(self, *args: str, wrapper: Sequence[str] = ()) -> list[str]:
        return [*wrapper, sys.executable, "-m", "tests.bench.child", "--loop", self.args.loop, *args]

    def spawn_server(self, kind: str, *args: str, wrapper: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], str]:
        """A helper server from tests/bench/servers.py (``args``: its options); (process, base URL)."""
        argv = self.child_args(kind, *args, wrapper=wrapper)
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log_file(kind))  # noqa: S603
        self.children.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("port "):
            raise RuntimeError(f"{kind} did not start (see {self.tmp})")
        self.loops.setdefault("bare loops and servers", event_loop_of(proc.pid))
        return proc, f"http://127.0.0.1:{line.split()[1]}"

    def relay_env(self, **extra: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        env.update(
            REDIS_URL=self.redis_server.url,
            RELAY_SIGNING_SECRETS=SECRET,
            RELAY_ENCRYPTION_KEY=ENCRYPTION_KEY,
            RELAY_MONITOR_ALLOWED_HOSTS="127.0.0.1",
            RELAY_ITEM_ALLOWED_HOSTS="127.0.0.1",
            RELAY_INTERNAL_HOSTS="127.0.0.1",
            RELAY_LOG_FORMAT="json",
            RELAY_WORKER_METRICS_PORT="0",
            RELAY_EVENT_LOOP=self.args.loop,  # relay on the loop the bare side runs on: a fair comparison
        )
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def spawn_relay(self, command: str, env: dict[str, str], wrapper: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        """``relay <command>``; ``wrapper`` runs it under another program (valgrind)."""
        log = self.log_file(command)
        # under a wrapper the script runs by the Python of its own environment (another checkout's, with --relay-bin)
        python = Path(self.args.relay_bin).parent / "python"
        interpreter = str(python) if python.exists() else sys.executable
        argv = [*wrapper, interpreter, self.args.relay_bin, command] if wrapper else [self.args.relay_bin, command]
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)  # noqa: S603
        self.children.append(proc)
        return proc

    async def start_worker(
        self, env: dict[str, str], wrapper: Sequence[str] = (), timeout: float = 30
    ) -> subprocess.Popen[bytes]:
        """``relay worker``, once its claim loops run (arq records its health key right after startup)."""
        before = await self.redis.keys(f"{keys.ARQ_QUEUE}:health-check:*")
        if before:  # one key per host: a second worker on this host is seen by the key coming back
            await self.redis.delete(*before)
        proc = self.spawn_relay("worker", env, wrapper)
        deadline = time.monotonic() + timeout
        while not await self.redis.keys(f"{keys.ARQ_QUEUE}:health-check:*"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"relay worker did not start (see {self.tmp})")
            await asyncio.sleep(0.1)
        self.loops.setdefault("relay worker", event_loop_of(proc.pid))
        return proc

    async def start_api(
        self, env: dict[str, str], wrapper: Sequence[str] = (), timeout: float = 30
    ) -> tuple[subprocess.Popen[bytes], str]:
        """``relay serve`` on a free port, once /readyz answers 200; (process, base URL)."""
        port = free_port()
        proc = self.spawn_relay("serve", {**env, "RELAY_PORT": str(port)}, wrapper)
        base = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                async with self.http.get(f"{base}/readyz") as resp:
                    return resp.status == 200
            return False

        if not await self.wait_until(ready, timeout, 0.1):
            raise RuntimeError(f"relay serve did not become ready (see {self.tmp})")
        self.loops.setdefault("relay serve", event_loop_of(proc.pid))
        return proc, base

    def stop(self, *procs: subprocess.Popen[bytes] | None) -> None:
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    async def start_helper(
        self, *args: str, on_mark: Callable[[str], Any] | None = None, wrapper: Sequence[str] = ()
    ) -> Helper:
        """Start a load generator from tests/bench/child.py; ``Helper.result()`` is its JSON result."""
        argv = self.child_args(*args, wrapper=wrapper)
        stderr = self.log_file(args[0])
        proc = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr)
        stderr.close()  # the child has its own copy
        return Helper(proc, args[0], on_mark)

    async def helper(self, *args: str, on_mark: Callable[[str], Any] | None = None) -> dict[str, Any]:
        """Run a load generator to its end; its JSON result."""
        return await (await self.start_helper(*args, on_mark=on_mark)).result()

    def meter(self, **pids: int) -> Meter:
        """A meter over the named processes and (always) the bench's Redis."""
        return Meter({**pids, "redis": self.redis_pid})

    # -- waiting, rows and notes --------------------------------------------------------------------

    async def wait_until(self, check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.25) -> bool:
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(interval)
        return True

    def add(self, figure: str, relay: str, baseline: str, ratio: float | None, target: str, ok: bool) -> None:
        self.rows.append(Row(figure, relay, baseline, ratio, target, ok))

    def info(self, figure: str, relay: str, baseline: str = "", ratio: float | None = None) -> None:
        """A figure without a target of its own (costs, ceilings, memory at rest)."""
        self.rows.append(Row(figure, relay, baseline, ratio, "", True, info=True))

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"    {text}", flush=True)

    def say(self, text: str) -> None:
        print(f"    {text}", flush=True)
