"""``make faults``: the faults of issue 32, one bounded run each, outside ``make test``.

Each scenario starts its own Redis, the simulator, ``relay serve``, two ``relay worker`` processes and the
misbehaving receiver of ``make chaos`` (tests/faults.py: 500 on ~20% of attempts, 429 on ~5%, a stall past
the request timeout on ~5%), registers copies, applies its fault, and prints the audit table of ``make
chaos`` with the stuck jobs and the longest lag (a copy's end on the simulator to its terminal event at the
receiver):

- ``baseline``: no fault, for comparison;
- ``full-redis``: ``maxmemory`` reached (``noeviction``) for 10 s while copies are being registered;
- ``client-pause``: ``CLIENT PAUSE`` of 8 s, twice;
- ``lost-replies``: the workers' Redis behind a proxy that adds 50-200 ms, loses the replies to 5 polls that
  saw a completion and 1% of all other replies;
- ``crowded-monitor``: 1,500 jobs on one monitor, 50 others beside it;
- ``skewed-worker``: one of the two workers' clock 10 minutes behind (libfaketime).

It exits non-zero if any scenario lost an event, left a job stuck, delivered out of order, had a bad
signature, saw a worker die, or (full-redis) answered other than 503 + Retry-After or logged more than one
refusal line per process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from relay.store.embedded import EmbeddedRedis
from tests.faults import (
    Workers,
    audit,
    fault_env,
    fill_redis,
    free_redis,
    opened_store,
    print_audit,
    register,
    start_api,
    start_peers,
    wait_drained,
    wait_ready,
)
from tests.helpers import free_port
from tests.proxy import CuttingProxy

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
REFUSING = "redis refuses commands; answering 503 and backing off until it accepts them again"


@dataclass
class Run:
    """What a scenario's fault gets: the Redis, and where to note what it saw."""

    redis: Redis
    started: float
    notes: dict[str, Any] = field(default_factory=dict)
    refusals: list[str | None] = field(default_factory=list)
    proxy: CuttingProxy | None = None


Fault = Callable[[Run], Awaitable[None]]


@dataclass
class Scenario:
    name: str
    jobs: int
    fault: Fault | None = None
    spread: float = 10.0
    longest: float = 15.0
    crowd: int = 0  # jobs sharing one monitor, beside ``jobs``
    proxy: bool = False
    skewed: bool = False
    limit: float = 150.0


async def _full_redis(run: Run) -> None:
    await asyncio.sleep(3)
    filled = await fill_redis(run.redis)
    began = time.monotonic()
    ready: list[int] = []
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - began < 10:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{run.notes['api']}/readyz") as resp:
                    ready.append(resp.status)
            await asyncio.sleep(1)
    await free_redis(run.redis, filled)
    run.notes["full for"] = f"{time.monotonic() - began:.1f} s"
    run.notes["/readyz while full"] = f"{sum(s == 503 for s in ready)}/{len(ready)} not ready"


async def _client_pauses(run: Run) -> None:
    for at in (4, 18):
        await asyncio.sleep(max(0.0, run.started + at - time.monotonic()))
        await run.redis.execute_command("CLIENT", "PAUSE", "8000", "ALL")
    run.notes["pauses"] = "2 x 8 s (CLIENT PAUSE ALL)"


SCENARIOS = {
    "baseline": Scenario("baseline", 150),
    "full-redis": Scenario("full-redis", 150, _full_redis, spread=20.0),
    "client-pause": Scenario("client-pause", 150, _client_pauses, spread=20.0),
    "lost-replies": Scenario("lost-replies", 100, proxy=True),
    "crowded-monitor": Scenario("crowded-monitor", 50, crowd=1500, limit=240.0),
    "skewed-worker": Scenario("skewed-worker", 150, skewed=True),
}


async def run_scenario(scn: Scenario) -> bool:
    started = time.monotonic()
    logdir = Path(tempfile.mkdtemp(prefix=f"relay-faults-{scn.name}-"))
    redis_server = EmbeddedRedis()
    async with contextlib.AsyncExitStack() as stack:
        redis_server.start()
        stack.callback(redis_server.cleanup)
        redis = Redis.from_url(redis_server.url, decode_responses=True)
        stack.push_async_callback(redis.aclose)
        sim, rec, hook = await start_peers(stack)

        port = free_port()
        env = fault_env(redis_server.url, port, RELAY_MONITOR_MAX_JOBS=str(max(1000, scn.crowd)))
        run = Run(redis, started, notes={"api": f"http://127.0.0.1:{port}"})
        api_proc = start_api(env, logdir)
        stack.callback(_stop, api_proc)
        worker_env = dict(env)
        if scn.proxy:
            # the replies to 5 polls that saw a completion (the case), and 1% of all others, at random
            run.proxy = CuttingProxy(
                redis_server.port, cut_on=b'"resolving"', cuts_left=5, rate=0.01, delay=(0.05, 0.2)
            )
            await run.proxy.start()
            stack.push_async_callback(run.proxy.stop)
            worker_env["REDIS_URL"] = run.proxy.url
        workers = Workers(2, worker_env, logdir)
        stack.callback(workers.stop_all)
        await wait_ready(run.notes["api"])
        if scn.skewed:
            skewed = dict(worker_env, LD_PRELOAD=str(LIBFAKETIME), FAKETIME="-600", FAKETIME_DONT_FAKE_MONOTONIC="1")
            workers.env = skewed
            workers.start(0)
            workers.env = worker_env
            workers.start(1)
        else:
            workers.start_all()
        ends: dict[str, float] = {}
        async with aiohttp.ClientSession() as session:
            fault = asyncio.create_task(scn.fault(run)) if scn.fault else None
            crowd = sim.create(duration=10.0) if scn.crowd else None
            registering = [
                register(
                    session,
                    run.notes["api"],
                    sim,
                    hook,
                    scn.jobs,
                    spread=scn.spread,
                    longest=scn.longest,
                    ends=ends,
                    refusals=run.refusals,
                )
            ]
            if crowd is not None:
                registering.append(
                    register(session, run.notes["api"], sim, hook, scn.crowd, ends=ends, monitor=crowd, parallel=16)
                )
            job_ids = [job for ids in await asyncio.gather(*registering) for job in ids]
            if fault is not None:
                await fault
        registered = time.monotonic() - started
        while len(rec.terminal & set(job_ids)) < len(job_ids) and time.monotonic() - started < scn.limit:
            await asyncio.sleep(0.5)
            workers.check()
        # at most 90 s for the schedule to drain: an event the receiver keeps failing can be a minute out on it,
        # and is counted as pending (the receiver's doing, not relay's)
        await wait_drained(redis_server.url, min(90.0, max(10.0, scn.limit - (time.monotonic() - started))))
        workers.check()
        figures = await audit(redis_server.url, job_ids, rec)
        workers.stop_all()
        _stop(api_proc)
        lags = sorted(rec.terminal_at[j] - ends[j] for j in job_ids if j in rec.terminal_at and j in ends)
        recorded = await _record_lags(redis_server.url, job_ids, ends)
        stuck = len(set(job_ids) - rec.terminal)
        print(f"\n== {scn.name} ({len(job_ids)} jobs; logs in {logdir})")
        print_audit(job_ids, rec, figures)
        print(f"{'stuck jobs (no terminal event)':40} {stuck}")
        print(f"{'longest lag (copy end -> terminal)':40} {lags[-1]:.1f} s" if lags else "no lag measured")
        print(f"{'median lag':40} {lags[len(lags) // 2]:.1f} s" if lags else "")
        if recorded:  # relay's own part: without the receiver's 500s, 429s and stalls
            print(f"{'longest lag to the terminal event recorded':40} {recorded[-1]:.1f} s")
        print(f"{'worker crashes':40} {workers.crashes}")
        print(f"{'registered in':40} {registered:.0f} s")
        ok = (
            stuck == 0
            and figures["lost"] == 0
            and figures["violations"] == 0
            and rec.bad_signatures == 0
            and workers.crashes == 0
        )
        ok = _scenario_checks(scn, run, logdir) and ok
        for name, value in run.notes.items():
            if name != "api":
                print(f"{name:40} {value}")
        print(f"{'wall time':40} {time.monotonic() - started:.0f} s")
        print(f"{scn.name}: {'PASS' if ok else 'FAIL'}", flush=True)
        return ok
    return False


async def _record_lags(redis_url: str, job_ids: list[str], ends: dict[str, float]) -> list[float]:
    """Each job's copy end to its terminal event's record in Redis (its ``created``, Redis' clock), sorted."""
    to_wall = time.time() - time.monotonic()
    lags = []
    async with opened_store(redis_url) as store:
        for job_id in job_ids:
            event_ids = await store.event_ids(job_id)
            last = await store.event(event_ids[-1], job_id) if event_ids else None
            if last is not None and last.created and job_id in ends:
                lags.append(last.created / 1000 - (ends[job_id] + to_wall))
    return sorted(lags)


def _scenario_checks(scn: Scenario, run: Run, logdir: Path) -> bool:
    """What each fault must also show: the refusals' answers and log lines, the replies cut."""
    ok = True
    lines = _log_lines(logdir)
    tracebacks = sum(1 for _, line in lines if "exception" in line)
    run.notes["log lines with a traceback"] = tracebacks
    if scn.name == "full-redis":
        refusal_lines = {name: 0 for name, _ in lines}
        for name, line in lines:
            refusal_lines[name] += line.get("event") == REFUSING
        per_process = max(refusal_lines.values(), default=0)
        run.notes["503s while full (all with Retry-After)"] = (
            f"{len(run.refusals)} ({sum(r is not None for r in run.refusals)} with Retry-After)"
        )
        run.notes["refusal lines per process (max)"] = per_process
        ok = bool(run.refusals) and all(r is not None for r in run.refusals) and per_process <= 1 and tracebacks == 0
    if scn.skewed:
        off = [line for _, line in lines if str(line.get("event", "")).startswith("this machine's clock is off")]
        run.notes["clock-offset error lines"] = f"{len(off)} (offset {off[0]['offset_s'] if off else '-'} s)"
        ok = ok and len(off) == 1
    if run.proxy is not None:
        run.notes["replies lost by the proxy"] = f"{len(run.proxy.cuts)} ({run.proxy.marked} to completing polls)"
        ok = ok and bool(run.proxy.cuts)
    return ok


def _log_lines(logdir: Path) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(logdir.glob("*.log")):
        for raw in path.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append((path.name, json.loads(raw)))
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def main(names: list[str]) -> int:
    results = {}
    for name in names:
        results[name] = await run_scenario(SCENARIOS[name])
    print("\nfaults:", ", ".join(f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", help=f"some of: {', '.join(SCENARIOS)} (default: all)")
    args = parser.parse_args()
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    sys.exit(asyncio.run(main(args.scenarios or list(SCENARIOS))))
