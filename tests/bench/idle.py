"""Section 8: what an idle sidecar costs: a ``relay worker`` and a ``relay serve`` with no jobs at all.

Each has a Redis of its own (the bench's, and a second embedded one for the API), so the Redis calls
are counted per process: requests from clients, seen with MONITOR (commands a Lua script runs inside
Redis are shown apart, from INFO commandstats deltas). CPU is each
process's run time over the window (/proc/<pid>/task/*/schedstat, nanoseconds). Then, still idle, the
worker is given one new job: its first poll must come within the first poll interval (1 s by
default), however the worker waits when there is nothing to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from redis.asyncio import Redis

from relay.store.embedded import EmbeddedRedis
from tests.bench import peers
from tests.bench.harness import Harness
from tests.bench.measure import Meter, redis_calls, rss_mib, wakeups

__all__ = ["run"]

SETTLE = 5.0
#: the baseline beside the idle worker: a bare asyncio loop that wakes once a second and does nothing else
BARE_WAKER = "import asyncio\nasync def main():\n    while True:\n        await asyncio.sleep(1.0)\nasyncio.run(main())"
FIRST_POLL_INTERVAL = 1.0  # RELAY_POLL_INITIAL_INTERVAL's default
#: resident memory at rest of each sidecar process, no credentials configured (issue 31)
RSS_TARGET_MIB = 50


def calls_text(calls: Counter[str], seconds: float) -> tuple[float, str]:
    """(calls per second, the commands behind them)."""
    top = ", ".join(f"{name} {count / seconds:.2g}" for name, count in calls.most_common(4))
    return sum(calls.values()) / seconds, top or "none"


async def client_calls(redis: Redis, seconds: float) -> Counter[str]:
    """Requests clients sent to ``redis`` during ``seconds`` (MONITOR; commands run by scripts left out)."""
    calls: Counter[str] = Counter()
    async with redis.monitor() as monitor:

        async def collect() -> None:
            while True:
                command = await monitor.next_command()
                if command["client_type"] != "lua":
                    calls[command["command"].split(" ", 1)[0].strip('"').lower()] += 1

        task = asyncio.create_task(collect())
        await asyncio.sleep(seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return calls


def bare_waker(h: Harness) -> subprocess.Popen[bytes]:
    """The baseline's process (stopped with the bench's other children)."""
    proc = subprocess.Popen([sys.executable, "-c", BARE_WAKER])  # noqa: S603
    h.children.append(proc)
    return proc


async def run(h: Harness) -> None:
    seconds: float = h.args.idle_seconds
    api_redis = EmbeddedRedis()
    api_redis.start()
    api_client = Redis.from_url(api_redis.url, decode_responses=True)
    sim_proc, sim = h.spawn_server("sim")
    rec_proc, receiver = h.spawn_server("receiver")
    worker = api = None
    try:
        await h.fresh_redis()
        worker = await h.start_worker(h.relay_env())
        api, api_base = await h.start_api(h.relay_env(REDIS_URL=api_redis.url))
        bare = bare_waker(h)
        await asyncio.sleep(SETTLE)
        meter = Meter({"worker": worker.pid, "api": api.pid, "bare": bare.pid})
        stats0 = await redis_calls(h.redis)
        woke0 = {name: wakeups(pid) for name, pid in (("worker", worker.pid), ("bare", bare.pid))}
        a = meter.sample()
        calls = await asyncio.gather(client_calls(h.redis, seconds), client_calls(api_client, seconds))
        b = meter.sample()
        woke = {name: wakeups(pid) - woke0[name] for name, pid in (("worker", worker.pid), ("bare", bare.pid))}
        h.stop(bare)
        in_scripts = sum((await redis_calls(h.redis)).values()) - sum(stats0.values()) - sum(calls[0].values())
        window = Meter.between(a, b)
        rss = {"worker": rss_mib(worker.pid), "api": rss_mib(api.pid)}
        parts = {name: rss_parts(pid) for name, pid in (("worker", worker.pid), ("api", api.pid))}
        first_poll = await pickup(h, sim, receiver)
        after_use = await first_requests(h, api.pid, api_base, sim, receiver)
    finally:
        h.stop(worker, api, sim_proc, rec_proc)
        await api_client.aclose()
        api_redis.cleanup()
    for (name, label), counted in zip((("worker", "relay worker"), ("api", "relay serve")), calls, strict=True):
        share = window.share(name)
        h.add(
            f"8 idle {label} (no jobs): CPU",
            f"{100 * share:.3f}% of a core ({window.cpu[name] * 30 / window.seconds:.3f} CPU-s per 30 s)",
            "",
            None,
            "< 0.1%",
            share < 0.001,
        )
        per_second, commands = calls_text(counted, window.seconds)
        h.add(f"8 idle {label}: Redis calls", f"{per_second:.1f}/s ({commands})", "", None, "<= 1/s", per_second <= 1)
    # what a wake-up costs differs tenfold between machines (seen: ~0.1 ms on an AMD EPYC VM, ~1.5 ms on an
    # Intel Xeon VM, for a bare loop's sleep): the wake-ups a second are the figure that travels
    per_wake = {name: window.cpu[name] / max(1, woke[name]) * 1e6 for name in woke}
    h.info(
        "8 idle worker: wake-ups; CPU per wake-up; vs a bare asyncio loop waking once a second",
        f"{woke['worker'] / window.seconds:.1f}/s; {per_wake['worker']:,.0f} µs",
        f"{woke['bare'] / window.seconds:.1f}/s; {per_wake['bare']:,.0f} µs; "
        f"{100 * window.share('bare'):.3f}% of a core",
    )
    h.note(
        f"idle worker: besides its requests, Lua scripts ran {in_scripts / window.seconds:.1f} commands/s inside Redis"
    )
    for name, label in (("api", "relay serve"), ("worker", "relay worker")):
        h.add(
            f"8 idle {label}: resident memory at rest (VmRSS)",
            f"{rss[name]:.1f} MiB",
            f"{RSS_TARGET_MIB} MiB",
            rss[name] / RSS_TARGET_MIB,
            "<= 1.00",
            rss[name] <= RSS_TARGET_MIB,
        )
    h.info(
        f"8 relay serve: resident memory after its first {REGISTRATIONS} registrations; then after GET /openapi.json",
        f"{after_use[0]:.1f} MiB; {after_use[1]:.1f} MiB",
        f"{rss['api']:.1f} MiB at rest",
    )
    h.note(
        "relay serve loads pydantic and its request models with the first request that validates a body, and "
        "builds the OpenAPI document on its first GET: at rest it holds neither (docs/performance.md, Memory)"
    )
    h.note(
        "resident memory at rest: "
        + "; ".join(f"{label} {parts[name]}" for name, label in (("api", "relay serve"), ("worker", "relay worker")))
        + " (file-backed pages are the libraries' code: shared with other processes mapping the same files)"
    )
    if first_poll is None:
        h.add("8 idle worker: first poll of a new job", "none within 10 s", "", None, "<= 1 s", False)
    else:
        h.add(
            f"8 idle worker: first poll of a new job after {seconds:.0f} s idle",
            f"{first_poll:.2f} s",
            f"{FIRST_POLL_INTERVAL:.0f} s (first poll interval)",
            first_poll / FIRST_POLL_INTERVAL,
            "<= 1.00",
            first_poll <= FIRST_POLL_INTERVAL,
        )


def rss_parts(pid: int) -> str:
    """Where a process's resident memory is: anonymous (its heap, Python's objects) and file-backed (code)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "RssShmem"):
            fields[key] = int(value.split()[0]) / 1024
    return f"anonymous {fields.get('RssAnon', 0):.1f} MiB, file-backed {fields.get('RssFile', 0):.1f} MiB"


#: registrations through the API after the reading at rest (the request models load with the first)
REGISTRATIONS = 5


async def first_requests(h: Harness, pid: int, base: str, sim: str, receiver: str) -> tuple[float, float]:
    """serve's VmRSS after its first registrations (POST /v1/jobs, monitors of the simulator), then after its
    first GET /openapi.json: what the figure at rest leaves out."""
    ops = await peers.sim_create(h.http, sim, [{"duration": 60.0}] * REGISTRATIONS)
    for op in ops:
        body = {"monitorUrl": op["monitorUrl"], "callbackUrl": f"{receiver}/hook"}
        async with h.http.post(f"{base}/v1/jobs", json=body) as resp:
            if resp.status != 201:
                raise RuntimeError(f"registration answered {resp.status}: {await resp.text()}")
    registered = rss_mib(pid)
    async with h.http.get(f"{base}/openapi.json") as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET /openapi.json answered {resp.status}")
    return registered, rss_mib(pid)


async def pickup(h: Harness, sim: str, receiver: str) -> float | None:
    """Register one job with the idle worker; seconds until the simulator saw its monitor's first GET."""
    (op,) = await peers.sim_create(h.http, sim, [{"duration": 2.0}], record=True)
    jid = uuid.uuid4().hex
    registered = time.time()
    await peers.register(h.store, [(jid, peers.job_fields(h.vault, f"{receiver}/hook"), op["monitorUrl"])])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        times = (await peers.sim_polls(h.http, sim, [op["id"]]))["ops"][op["id"]]["times"]
        if times:
            return float(min(times)) - registered
        await asyncio.sleep(0.05)
    return None
