"""``make chaos``: a bounded fault run on loopback, outside ``make test``.

1,000 copies on the simulator; three ``relay worker`` processes SIGKILLed and restarted over and
over; Redis (AOF, fsync always) restarted once; a receiver that answers 500 to ~20% of attempts,
stalls past the request timeout on ~5% and answers 429 + Retry-After on ~5%. It prints the figures
and exits non-zero if any job's terminal event is missing, any event is lost, any job's events
arrived out of order, or a worker died other than by our kills.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook

from relay.core.schema import EventType
from relay.simulator import Simulator
from relay.store.embedded import EmbeddedRedis
from tests.helpers import RELAY, free_port, relay_env

TERMINAL = EventType.terminal_types()

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REQUEST_TIMEOUT = 2.0


@dataclass
class Receiver:
    rng: random.Random
    seen: dict[str, int] = field(default_factory=dict)  # webhook-id -> times received
    order: dict[str, list[tuple[int, str, str]]] = field(default_factory=lambda: defaultdict(list))
    terminal: set[str] = field(default_factory=set)
    duplicates: int = 0
    bad_signatures: int = 0
    answers: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    hook: Webhook = field(default_factory=lambda: Webhook(SECRET))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            event = self.hook.verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=400)
        event_id = request.headers["webhook-id"]
        draw = self.rng.random()
        if draw < 0.20:
            self.answers["500"] += 1
            return web.Response(status=500)
        if draw < 0.25:
            self.answers["429"] += 1
            return web.Response(status=429, headers={"Retry-After": "1"})
        # from here the receiver takes the event; ~5% of the time it then answers too late, so relay
        # retries an event that did arrive: a duplicate with the same webhook-id, which is what at-least-once means
        self.record(event_id, event)
        if draw < 0.30:
            self.answers["stall"] += 1
            await asyncio.sleep(REQUEST_TIMEOUT + 1)
            return web.Response(status=204)
        self.answers["204"] += 1
        return web.Response(status=204)

    def record(self, event_id: str, event: dict[str, Any]) -> None:
        if event_id in self.seen:
            self.duplicates += 1
            self.seen[event_id] += 1
            return
        self.seen[event_id] = 1
        data = event["data"]
        self.order[data["jobId"]].append((data["sequence"], event["type"], event_id))
        if event["type"] in TERMINAL:
            self.terminal.add(data["jobId"])


class Workers:
    def __init__(self, count: int, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.kills = 0
        self.crashes = 0
        self.starts = 0

    def start(self, i: int) -> None:
        self.starts += 1
        log = open(self.logdir / f"worker-{i}-{self.starts}.log", "wb")  # noqa: SIM115
        self.procs[i] = subprocess.Popen([RELAY, "worker"], env=self.env, stdout=log, stderr=log)  # noqa: S603

    def start_all(self) -> None:
        for i in range(len(self.procs)):
            self.start(i)

    def check(self) -> None:
        """A worker that exited without being killed is a crash: count it and start another."""
        for i, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is not None:
                self.crashes += 1
                print(f"  worker {i} exited by itself with code {proc.returncode}", flush=True)
                self.start(i)

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.kills += 1
        self.procs[i] = None

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def start_api(env: dict[str, str], logdir: Path) -> subprocess.Popen[bytes]:
    log = open(logdir / "api.log", "wb")  # noqa: SIM115
    return subprocess.Popen([RELAY, "serve"], env=env, stdout=log, stderr=log)  # noqa: S603


async def register(session: aiohttp.ClientSession, api: str, sim: Simulator, hook: str, n: int) -> list[str]:
    rng = random.Random(7)
    sem = asyncio.Semaphore(32)
    ids: list[str] = []

    async def one(i: int) -> None:
        knobs: dict[str, Any] = {"duration": rng.uniform(3, 40), "rate_429": 0.03, "rate_500": 0.03}
        if i % 10 == 0:
            knobs["outcome"] = "failed"
        if i % 7 == 0:
            knobs["completion"] = "beta202"
        op = sim.create(**knobs)
        body = {
            "monitorUrl": op.monitor_url,
            "callbackUrl": hook,
            "driveItemUrl": f"{sim.base_url}/v1.0/me/drive/items/{{resourceId}}",
            "authorization": "Bearer sim-token",
            "metadata": {"i": i},
        }
        async with sem:
            for _ in range(50):
                try:
                    async with session.post(f"{api}/v1/jobs", json=body) as resp:
                        if resp.status == 201:
                            ids.append((await resp.json())["id"])
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            raise RuntimeError("registration kept failing")

    await asyncio.gather(*(one(i) for i in range(n)))
    return ids


async def wait_ready(api: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{api}/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError("the API did not become ready")


async def wait_drained(redis_url: str, timeout: float) -> bool:
    redis = Redis.from_url(redis_url, decode_responses=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if await redis.zcard("relay:sched:deliveries") == 0:
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await redis.aclose()


async def audit(redis_url: str, job_ids: list[str], rec: Receiver) -> dict[str, int]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    lost = 0
    pending = 0
    for job_id in job_ids:
        event_ids = await redis.lrange(f"relay:job:{job_id}:events", 0, -1)
        for event_id in event_ids:
            state = await redis.hget(f"relay:event:{event_id}", "state")
            if state == "delivered" and event_id not in rec.seen:
                lost += 1
            elif state not in ("delivered", "superseded"):
                pending += 1
    await redis.aclose()
    violations = 0
    for events in rec.order.values():
        seqs = [seq for seq, _, _ in events]
        if seqs != sorted(set(seqs)):
            violations += 1
        if any(kind in TERMINAL for _, kind, _ in events[:-1]):
            violations += 1
    return {"lost": lost, "pending": pending, "violations": violations}


async def main(jobs: int, limit: float) -> int:
    started = time.monotonic()
    rng = random.Random(1)
    logdir = Path(tempfile.mkdtemp(prefix="relay-chaos-"))
    redis_server = EmbeddedRedis(appendonly=True, data_dir=str(logdir / "redis"))
    (logdir / "redis").mkdir()
    redis_server.start()
    sim = Simulator(seed=3)
    await sim.start()
    rec = Receiver(random.Random(5))
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"

    port = free_port()
    env = relay_env(
        REDIS_URL=redis_server.url,
        RELAY_PORT=str(port),
        RELAY_SIGNING_SECRETS=SECRET,
        RELAY_MONITOR_ALLOWED_HOSTS="127.0.0.1",
        RELAY_ITEM_ALLOWED_HOSTS="127.0.0.1",
        RELAY_INTERNAL_HOSTS="127.0.0.1",
        RELAY_POLL_INITIAL_INTERVAL="0.5",
        RELAY_POLL_MAX_INTERVAL="5",
        RELAY_REQUEST_TIMEOUT=str(REQUEST_TIMEOUT),
        RELAY_DELIVERY_SCHEDULE="0,1,2,4,8,15,30,30,60,60,60,60",
        RELAY_LOG_FORMAT="json",
        RELAY_WORKER_METRICS_PORT="0",
    )
    api_proc = start_api(env, logdir)
    workers = Workers(3, env, logdir)
    api = f"http://127.0.0.1:{port}"
    code = 1
    try:
        await wait_ready(api)
        workers.start_all()
        print(f"chaos: {jobs} jobs, 3 workers, logs in {logdir}", flush=True)
        async with aiohttp.ClientSession() as session:
            job_ids = await register(session, api, sim, hook, jobs)
        print(f"  registered {len(job_ids)} jobs in {time.monotonic() - started:.0f} s", flush=True)
        redis_restarted = False
        next_kill = time.monotonic() + rng.uniform(3, 6)
        while len(rec.terminal) < len(job_ids) and time.monotonic() - started < limit:
            await asyncio.sleep(0.5)
            workers.check()
            now = time.monotonic()
            if now >= next_kill:
                victim = rng.randrange(3)
                workers.kill(victim)
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                workers.start(victim)
                next_kill = now + rng.uniform(3, 8)
            if not redis_restarted and now - started > 40:
                print("  restarting Redis", flush=True)
                redis_server.stop()
                await asyncio.sleep(1.0)
                redis_server.start()
                redis_restarted = True
            if int(now) % 15 == 0:
                print(
                    f"  {now - started:5.0f} s: {len(rec.terminal)}/{len(job_ids)} terminal, {workers.kills} kills",
                    flush=True,
                )
        # a worker killed after its callback answered leaves that event to be sent again once its lease
        # runs out: wait (bounded) for the delivery schedule to drain, then audit
        drained = await wait_drained(redis_server.url, min(120.0, max(10.0, limit - (time.monotonic() - started))))
        print(f"  delivery schedule {'drained' if drained else 'NOT drained'}", flush=True)
        workers.check()
        figures = await audit(redis_server.url, job_ids, rec)
        missing = len(job_ids) - len(rec.terminal)
        print()
        print(f"{'jobs registered':40} {len(job_ids)}")
        print(f"{'jobs whose terminal event arrived':40} {len(rec.terminal)}")
        print(f"{'events lost':40} {figures['lost']}")
        print(f"{'events still pending':40} {figures['pending']}")
        print(f"{'order violations':40} {figures['violations']}")
        print(f"{'duplicate deliveries (same webhook-id)':40} {rec.duplicates}")
        print(f"{'bad signatures':40} {rec.bad_signatures}")
        print(f"{'worker SIGKILLs':40} {workers.kills}")
        print(f"{'Redis restarts':40} {1 if redis_restarted else 0}")
        print(f"{'worker crashes other than the kills':40} {workers.crashes}")
        print(f"{'receiver answers':40} {dict(rec.answers)}")
        print(f"{'monitor polls':40} {sim.total_polls}")
        print(f"{'wall time':40} {time.monotonic() - started:.0f} s")
        ok = (
            missing == 0
            and figures["lost"] == 0
            and figures["violations"] == 0
            and workers.crashes == 0
            and rec.bad_signatures == 0
            and redis_restarted
        )
        print("chaos: PASS" if ok else "chaos: FAIL")
        code = 0 if ok else 1
    finally:
        workers.stop_all()
        api_proc.terminate()
        api_proc.wait(30)
        await runner.cleanup()
        await sim.stop()
        redis_server.stop()
    return code


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--limit", type=float, default=480, help="seconds before giving up")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.jobs, args.limit)))
