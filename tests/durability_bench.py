"""What RELAY_REDIS_MIN_REPLICAS costs: registrations/s and polls/s with it at 0 and at 1.

Outside ``make test``; ``make failover`` runs it last, or ``python -m tests.durability_bench``. A
primary and one replica on loopback (real ``redis-server`` processes, REDIS_URL at the primary).
Registrations: one ``relay serve`` driven by the load generator of tests/bench/ (loadgen.py) (64 connections,
POST /v1/jobs, 2 s warm-up, 8 s measured), as row 3 of ``make bench``. Polls: one ``relay worker``
polling 2,000 monitors that are due every 10 ms (200 in flight), counted by the simulator over 10 s
after a 3 s warm-up, as row 1. The two settings alternate, ``--rounds`` times each, and are averaged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from relay.core.schema import Job
from relay.store import keys
from relay.store.jobs import Store
from tests.bench import report
from tests.bench.register import BODY as REGISTER_BODY  # the body section 3 of the bench registers
from tests.helpers import RELAY, free_port, loopback_env
from tests.sentinels import PrimaryReplica

ROOT = Path(__file__).resolve().parent.parent
MONITORS = 2000


def cpu_model() -> str:
    model = report.cpu_model()
    return f"{model} ({os.cpu_count()} cores)" if model else platform.processor() or "unknown CPU"


class DurabilityBench:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.tmp = Path(tempfile.mkdtemp(prefix="relay-durability-bench-"))
        self.pair = PrimaryReplica()
        self.children: list[subprocess.Popen[bytes]] = []
        self.results: dict[int, dict[str, list[float]]] = {0: {}, 1: {}}
        self.receiver = ""

    def env(self, replicas: int, **extra: Any) -> dict[str, str]:
        settings = {k: str(v) for k, v in extra.items()}
        return loopback_env(self.pair.primary.url, RELAY_REDIS_MIN_REPLICAS=str(replicas), **settings)

    def spawn(self, args: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{len(self.children):02d}-{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)  # noqa: S603
        self.children.append(proc)
        return proc

    def server(self, kind: str) -> tuple[subprocess.Popen[bytes], str]:
        proc = self.spawn([sys.executable, "-m", "tests.bench.child", kind], kind)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("port "):
            raise RuntimeError(f"{kind} did not start (see {self.tmp})")
        return proc, f"http://127.0.0.1:{line.split()[1]}"

    @staticmethod
    def stop(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @staticmethod
    async def commands(redis: Redis) -> dict[str, int]:
        """Calls of EVALSHA and WAIT so far (the primary's command statistics)."""
        stats = await redis.info("commandstats")
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "wait")}

    @staticmethod
    def per(before: dict[str, int], after: dict[str, int], count: float) -> str:
        scripts, waits = (after[k] - before[k] for k in ("evalsha", "wait"))
        return f"{scripts / count:.2f} script calls and {waits / count:.2f} WAITs each" if count else "none"

    def record(self, replicas: int, figure: str, value: float) -> None:
        self.results[replicas].setdefault(figure, []).append(value)

    async def registrations(self, replicas: int, redis: Redis, http: aiohttp.ClientSession) -> None:
        await redis.flushall()
        port = free_port()
        api = self.spawn([RELAY, "serve"], "serve", self.env(replicas, RELAY_PORT=port))
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"relay serve did not become ready (see {self.tmp})")
                await asyncio.sleep(0.1)
            load = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.bench.child", "loadgen", "--url", f"{base}/v1/jobs",
                "--body", REGISTER_BODY, "--concurrency", "64", "--warmup", "2", "--duration", "8",
                cwd=ROOT, stdout=subprocess.PIPE,
            )  # fmt: skip
            before = await self.commands(redis)
            out, _ = await load.communicate()
            after = await self.commands(redis)
            result = json.loads(out.decode().strip().splitlines()[-1])
        finally:
            self.stop(api)
        refused = sum(v for k, v in result["statuses"].items() if k != "201") + result["errors"]
        created = sum(v for k, v in result["statuses"].items() if k == "201")
        print(
            f"  RELAY_REDIS_MIN_REPLICAS={replicas}: {result['rate']:,.0f} registrations/s, "
            f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, answers other than 201: {refused}; "
            f"{self.per(before, after, created)}",
            flush=True,
        )
        self.record(replicas, "registrations", result["rate"])
        self.record(replicas, "p99", result["p99_ms"] or 0.0)

    async def polls(self, replicas: int, redis: Redis, http: aiohttp.ClientSession, sim: str, urls: list[str]) -> None:
        await redis.flushall()
        store = Store(redis, retention=3600, job_timeout=3600)
        fields = Job(owner="public", monitor_host="127.0.0.1", callback_url=f"{self.receiver}/hook")
        await asyncio.gather(*(store.register(uuid.uuid4().hex, fields, url) for url in urls))
        env = self.env(
            replicas, RELAY_POLL_CONCURRENCY=200, RELAY_POLL_INITIAL_INTERVAL=0.01, RELAY_POLL_MAX_INTERVAL=0.01
        )
        worker = self.spawn([RELAY, "worker"], "worker", env)
        try:
            deadline = time.monotonic() + 30
            while not await redis.keys(f"{keys.ARQ_QUEUE}:health-check:*"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"relay worker did not start (see {self.tmp})")
                await asyncio.sleep(0.1)
            await asyncio.sleep(3)
            p0, t0, before = await self.sim_polls(http, sim), time.monotonic(), await self.commands(redis)
            await asyncio.sleep(10)
            p1, t1, after = await self.sim_polls(http, sim), time.monotonic(), await self.commands(redis)
            rate = (p1 - p0) / (t1 - t0)
        finally:
            self.stop(worker)
        print(
            f"  RELAY_REDIS_MIN_REPLICAS={replicas}: {rate:,.0f} polls/s; {self.per(before, after, p1 - p0)}",
            flush=True,
        )
        self.record(replicas, "polls", rate)

    @staticmethod
    async def sim_polls(http: aiohttp.ClientSession, sim: str) -> int:
        async with http.get(f"{sim}/sim/stats") as resp:
            return int((await resp.json())["polls"])

    async def run(self) -> None:
        sim_proc = rec_proc = None
        redis: Redis | None = None
        try:  # whatever fails to start, what did start is stopped (the pair is two redis-server processes)
            self.pair.start()
            sim_proc, sim = self.server("sim")
            rec_proc, self.receiver = self.server("receiver")
            redis = Redis.from_url(self.pair.primary.url, decode_responses=True)
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"{sim}/bench/create", json={"ops": [{"duration": 3600, "stuck": True}] * MONITORS}
                ) as resp:
                    urls = [op["monitorUrl"] for op in (await resp.json())["ops"]]
                version = (await redis.info("server"))["redis_version"]
                print(f"durability bench: primary + 1 replica (Redis {version}), {cpu_model()}", flush=True)
                for n in range(self.rounds):
                    order = (0, 1) if n % 2 == 0 else (1, 0)
                    print(f" round {n + 1}: registrations", flush=True)
                    for replicas in order:
                        await self.registrations(replicas, redis, http)
                    print(f" round {n + 1}: polls", flush=True)
                    for replicas in order:
                        await self.polls(replicas, redis, http, sim, urls)
        finally:
            if redis is not None:
                await redis.aclose()
            self.stop(sim_proc)
            self.stop(rec_proc)
            self.pair.cleanup()
        self.report()

    def report(self) -> None:
        def mean(replicas: int, figure: str) -> float:
            values = self.results[replicas][figure]
            return sum(values) / len(values)

        print()
        print(f"{'RELAY_REDIS_MIN_REPLICAS':26} {'registrations/s':>16} {'p99':>9} {'polls/s':>9}")
        for replicas in (0, 1):
            print(
                f"{replicas:<26} {mean(replicas, 'registrations'):>16,.0f} {mean(replicas, 'p99'):>6.0f} ms "
                f"{mean(replicas, 'polls'):>9,.0f}"
            )
        reg = mean(1, "registrations") / mean(0, "registrations")
        polls = mean(1, "polls") / mean(0, "polls")
        print(f"{'1 vs 0':26} {reg:>16.2f} {'':>9} {polls:>9.2f}")
        print(f"(means of {self.rounds} rounds; {cpu_model()}; logs in {self.tmp})", flush=True)


async def main(rounds: int = 2) -> None:
    await DurabilityBench(rounds).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args().rounds))
