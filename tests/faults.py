"""What the fault runs share: a receiver that misbehaves on purpose, worker processes to kill, the
registration of copies on the simulator, and the audit of every event in Redis against what the
receiver got. Used by tests/chaos.py (``make chaos``) and tests/failover.py (``make failover``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from relay.config.settings import Settings
from relay.core.schema import EventState, EventType
from relay.simulator import Simulator
from relay.store.jobs import Store
from relay.store.open import open_store
from tests.helpers import RELAY, SECRET, loopback_env

TERMINAL = EventType.terminal_types()

__all__ = [
    "REQUEST_TIMEOUT",
    "SECRET",
    "Receiver",
    "Workers",
    "audit",
    "audit_lines",
    "fault_env",
    "fill_redis",
    "free_redis",
    "opened_store",
    "print_audit",
    "register",
    "start_api",
    "start_peers",
    "surviving",
    "wait_drained",
    "wait_ready",
]

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
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of every POST
    terminal_at: dict[str, float] = field(default_factory=dict)  # job id -> time.monotonic() its end arrived

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.arrivals.append(time.monotonic())
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
            self.terminal_at.setdefault(data["jobId"], time.monotonic())


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


async def register(
    session: aiohttp.ClientSession,
    api: str,
    sim: Simulator,
    hook: str,
    n: int,
    *,
    parallel: int = 32,
    spread: float = 0.0,
    longest: float = 40.0,
    created: list[float] | None = None,
    ends: dict[str, float] | None = None,
    refusals: list[str | None] | None = None,
    monitor: Any = None,
    answers: Counter[int] | None = None,
) -> list[str]:
    """Start ``n`` copies on the simulator and register each; the ids of the jobs the API acknowledged (201).

    A refused or failed attempt is tried again (a new job: nothing was acknowledged). ``spread``:
    seconds over which the registrations are started; ``created``: gets the time of each 201; ``ends``: each
    job's copy's end (``time.monotonic()``); ``refusals``: the Retry-After of every 503 (None: it had none);
    ``monitor``: one simulator operation every job shares (a crowded monitor) instead of one each; ``answers``:
    counts every status the API answered (0: no answer, a connection error).
    """
    rng = random.Random(7)
    sem = asyncio.Semaphore(parallel)
    ids: list[str] = []
    begun = time.monotonic()

    async def one(i: int) -> None:
        if spread:
            await asyncio.sleep(begun + spread * i / n - time.monotonic())
        knobs: dict[str, Any] = {"duration": rng.uniform(3, longest), "rate_429": 0.03, "rate_500": 0.03}
        if i % 10 == 0:
            knobs["outcome"] = "failed"
        if i % 7 == 0:
            knobs["completion"] = "beta202"
        op = monitor if monitor is not None else sim.create(**knobs)
        body = {
            "monitorUrl": op.monitor_url,
            "callbackUrl": hook,
            "driveItemUrl": f"{sim.base_url}/v1.0/me/drive/items/{{resourceId}}",
            "authorization": "Bearer sim-token",
            "metadata": {"i": i},
        }
        async with sem:
            for _ in range(50):
                status, job_id, retry_after = await _post_job(session, api, body)
                if answers is not None:
                    answers[status] += 1
                if job_id is not None:
                    ids.append(job_id)
                    if created is not None:
                        created.append(time.monotonic())
                    if ends is not None:
                        ends[job_id] = op.created + op.options.duration
                    return
                wait = 0.2
                if status == 503:  # as a client should: again after Retry-After
                    if refusals is not None:
                        refusals.append(retry_after)
                    wait = float(retry_after) if retry_after and retry_after.isdigit() else wait
                await asyncio.sleep(wait)
            raise RuntimeError("registration kept failing")

    await asyncio.gather(*(one(i) for i in range(n)))
    return ids


async def _post_job(
    session: aiohttp.ClientSession, api: str, body: dict[str, Any]
) -> tuple[int, str | None, str | None]:
    """One ``POST /v1/jobs``: (status, 0 without an answer; the job id of a 201; the Retry-After of a 503)."""
    try:
        async with session.post(f"{api}/v1/jobs", json=body) as resp:
            if resp.status == 201:
                return resp.status, str((await resp.json())["id"]), None
            return resp.status, None, resp.headers.get("Retry-After")
    except aiohttp.ClientError:
        return 0, None, None


async def start_peers(stack: contextlib.AsyncExitStack) -> tuple[Simulator, Receiver, str]:
    """The Graph simulator and a verifying receiver on loopback, stopped by ``stack``; the receiver's hook URL."""
    sim = Simulator(seed=3)
    await sim.start()
    stack.push_async_callback(sim.stop)
    rec = Receiver(random.Random(5))
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return sim, rec, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


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


@contextlib.asynccontextmanager
async def opened_store(source: str | Mapping[str, str]) -> AsyncIterator[Store]:
    """The store as relay's processes open it (:func:`relay.store.open.open_store`): ``source`` is a Redis URL, or
    the relay processes' environment (a cluster URL needs settings beside REDIS_URL). The audit reads through it,
    never literal keys, so it reads a cluster's hash-tagged keys as relay does."""
    env = {"REDIS_URL": source} if isinstance(source, str) else dict(source)
    store = open_store(Settings.from_env(env))
    try:
        yield store
    finally:
        await store.redis.aclose()


async def wait_drained(source: str | Mapping[str, str], timeout: float) -> bool:
    """Until the delivery schedule is empty (every lane, every bucket), at most ``timeout`` s; whether it was."""
    deadline = time.monotonic() + timeout
    async with opened_store(source) as store:
        while time.monotonic() < deadline:
            if await store.deliveries.size() == 0:
                return True
            await asyncio.sleep(0.5)
        return False


async def surviving(source: str | Mapping[str, str], job_ids: list[str]) -> set[str]:
    """The jobs of ``job_ids`` the store still knows."""
    async with opened_store(source) as store:
        found = await store.jobs(job_ids)
    return {job.id for job in found}


async def audit(source: str | Mapping[str, str], job_ids: list[str], rec: Receiver) -> dict[str, int]:
    """Every acknowledged job's events in Redis against what the receiver got (``source``: as
    :func:`opened_store`).

    Lost: an event Redis holds as delivered that the receiver never got, and the terminal event of
    an acknowledged job that Redis no longer knows (a registration answered 201, then forgotten),
    unless the receiver got it before.
    """
    lost = 0
    pending = 0
    vanished = 0
    done = (EventState.DELIVERED, EventState.SUPERSEDED)
    async with opened_store(source) as store:
        for job_id in job_ids:
            if await store.job(job_id) is None:
                vanished += 1
                lost += job_id not in rec.terminal
                continue
            event_ids = await store.event_ids(job_id)
            for event_id, found in zip(event_ids, await store.events(event_ids, job_id), strict=True):
                state = found.state if found is not None else None
                if state == EventState.DELIVERED and event_id not in rec.seen:
                    lost += 1
                elif state not in done:
                    pending += 1
    violations = 0
    for events in rec.order.values():
        seqs = [seq for seq, _, _ in events]
        if seqs != sorted(set(seqs)):
            violations += 1
        if any(kind in TERMINAL for _, kind, _ in events[:-1]):
            violations += 1
    return {"lost": lost, "pending": pending, "violations": violations, "vanished": vanished}


def audit_lines(job_ids: list[str], rec: Receiver, figures: dict[str, int]) -> list[str]:
    """The audit's table: one line per figure."""
    return [
        f"{'jobs registered':40} {len(job_ids)}",
        f"{'jobs whose terminal event arrived':40} {len(rec.terminal & set(job_ids))}",
        f"{'events lost':40} {figures['lost']}",
        f"{'events still pending':40} {figures['pending']}",
        f"{'order violations':40} {figures['violations']}",
        f"{'duplicate deliveries (same webhook-id)':40} {rec.duplicates}",
        f"{'bad signatures':40} {rec.bad_signatures}",
    ]


def print_audit(job_ids: list[str], rec: Receiver, figures: dict[str, int]) -> None:
    for line in audit_lines(job_ids, rec, figures):
        print(line)


async def fill_redis(redis: Any, blocks: int = 32) -> int:
    """Make Redis full (``noeviction``): ``blocks`` keys of 64 KB written, then ``maxmemory`` set that much below
    what it uses, so that every write is refused from that moment (filling up to the limit instead leaves a window in
    which a refused write's freed buffers let small ones in); the number of filler keys, for :func:`free_redis`."""
    await redis.config_set("maxmemory-policy", "noeviction")
    block = "x" * 65536
    for i in range(blocks):
        await redis.set(f"filler:{i}", block)
    used = int((await redis.info("memory"))["used_memory"])
    # well below: the workers' scripts still free memory (a delete is not refused), which must not let writes in
    await redis.config_set("maxmemory", str(max(1, used - blocks * 65536)))
    return blocks


async def free_redis(redis: Any, blocks: int) -> None:
    """Undo :func:`fill_redis`: no limit, the filler keys gone."""
    await redis.config_set("maxmemory", "0")
    if blocks:
        await redis.delete(*(f"filler:{i}" for i in range(blocks)))


def fault_env(redis_url: str, port: int, **settings: str) -> dict[str, str]:
    """The relay processes of a fault run: quick polls, a delivery schedule that drains in minutes."""
    return loopback_env(
        redis_url,
        RELAY_PORT=str(port),
        RELAY_POLL_INITIAL_INTERVAL="0.5",
        RELAY_POLL_MAX_INTERVAL="5",
        RELAY_REQUEST_TIMEOUT=str(REQUEST_TIMEOUT),
        RELAY_DELIVERY_SCHEDULE="0,1,2,4,8,15,30,30,60,60,60,60",
        **settings,
    )
