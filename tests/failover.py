"""``make failover``: relay through a Sentinel failover, audited like ``make chaos``, outside ``make test``.

For RELAY_REDIS_MIN_REPLICAS=0 and then =1, on a fresh setup each time: a Redis primary, one replica
and three Sentinels (real ``redis-server`` processes on loopback), ``relay serve`` and two ``relay
worker`` processes with a ``redis+sentinel://`` REDIS_URL, a few hundred copies on the simulator
registered over ten seconds, the receiver of ``make chaos`` (500s, 429s, answers too late). Midway
through the registrations the replica's link from the primary stalls for a second (the primary keeps
acknowledging what the replica never gets: a congested or partitioned network), then the primary is
SIGKILLed and what the link held is dropped, as the primary's host dying would drop it. The Sentinels
promote the replica; the old primary is restarted as a replica of the new one. Then the same audit as
``make chaos``. It prints ``events lost N`` for each setting and exits non-zero when the run with
RELAY_REDIS_MIN_REPLICAS=1 lost anything (or missed a terminal event, delivered out of order, ...).
Last, unless ``--no-bench``, the cost of the setting (tests/durability_bench.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from relay.simulator import Simulator
from tests.faults import (
    Receiver,
    Workers,
    audit,
    audit_lines,
    fault_env,
    register,
    start_api,
    surviving,
    wait_drained,
    wait_ready,
)
from tests.helpers import free_port
from tests.sentinels import SentinelSetup

#: seconds the replica's link holds back what the primary sends before the primary is killed
STALL = 1.0
#: seconds after the promotion before the old primary is started again (as a replica)
RESTART_AFTER = 2.0
REGISTER_OVER = 10.0
KILL_AT = 4.0  # seconds into the registrations


@dataclass
class Run:
    replicas: int
    ok: bool = False
    lost: int = -1
    wrong: int = 0  # answers of the API that differ from what the receiver got (make cluster)
    lines: list[str] = field(default_factory=list)  # the table

    def print(self) -> None:
        print()
        for line in self.lines:
            print(line)
        print(flush=True)


def first_after(times: list[float], moment: float) -> float | None:
    """Seconds from ``moment`` to the first of ``times`` after it."""
    return later(times, moment, moment)


def later(times: list[float], moment: float, origin: float) -> float | None:
    """Seconds from ``origin`` to the first of ``times`` after ``moment``."""
    after = [t for t in times if t > moment]
    return min(after) - origin if after else None


def polls_resumed(samples: list[tuple[float, int]], moment: float, origin: float) -> float | None:
    """Seconds from ``origin`` until the simulator's poll count grew again after ``moment``."""
    base = next((count for at, count in samples if at >= moment), None)
    return next((at - origin for at, count in samples if at >= moment and base is not None and count > base), None)


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


@dataclass
class Timeline:
    """When a run began, its primary was killed and the replica promoted (seconds after the kill), and what came
    after: every 201's time, the simulator's poll count sampled every 50 ms."""

    started: float
    killed: float
    promoted: float | None
    created: list[float]
    polls: list[tuple[float, int]]

    def lines(self, promoted_by: str) -> list[str]:
        if self.promoted is None:  # no failover in this run (a reshard)
            return []
        promoted_at = self.killed + self.promoted
        return [
            f"{'failover: ' + promoted_by + ' after':40} {seconds(self.promoted)}",
            f"{'failover: API answered 201 again after':40} {seconds(first_after(self.created, self.killed))}",
            f"{'failover: monitors polled again after':40} "
            f"{seconds(polls_resumed(self.polls, promoted_at, self.killed))}",
        ]


async def settle_and_audit(
    result: Run,
    source: str | Mapping[str, str],
    job_ids: list[str],
    rec: Receiver,
    workers: Workers,
    timeline: Timeline,
    limit: float,
    promoted_by: str,
    extra: Sequence[str] = (),
    *,
    print_table: bool = True,
) -> None:
    """Wait for every surviving job's end and the delivery schedule to drain, audit (``source``: as
    :func:`tests.faults.opened_store`), set ``result`` (its table in ``lines``) and print the table."""
    started = timeline.started
    known = await surviving(source, job_ids)
    # a job whose registration was lost can never end: wait for the others
    while not known <= rec.terminal and time.monotonic() - started < limit:
        await asyncio.sleep(0.5)
        workers.check()
    drained = await wait_drained(source, min(120.0, max(10.0, limit - (time.monotonic() - started))))
    print(f"  delivery schedule {'drained' if drained else 'NOT drained'}", flush=True)
    workers.check()
    figures = await audit(source, job_ids, rec)
    lines = [
        f"{'jobs acknowledged, then forgotten':40} {figures['vanished']}",
        *timeline.lines(promoted_by),
    ]
    if timeline.promoted is not None:
        resumed = later(rec.arrivals, timeline.killed + timeline.promoted, timeline.killed)
        lines.append(f"{'failover: callbacks called again after':40} {seconds(resumed)}")
    lines += [
        *extra,
        f"{'worker crashes':40} {workers.crashes}",
        f"{'receiver answers':40} {dict(rec.answers)}",
        f"{'wall time':40} {time.monotonic() - started:.0f} s",
    ]
    result.lost = figures["lost"]
    result.lines = audit_lines(job_ids, rec, figures) + lines
    if print_table:
        result.print()
    result.ok = (
        known <= rec.terminal
        and figures["lost"] == 0
        and figures["violations"] == 0
        and figures["vanished"] == 0
        and rec.bad_signatures == 0
        and workers.crashes == 0
    )


async def run(replicas: int, jobs: int, limit: float) -> Run:
    result = Run(replicas)
    started = time.monotonic()
    logdir = Path(tempfile.mkdtemp(prefix=f"relay-failover-{replicas}-"))
    # a Sentinel "corrects" a replica whose primary address is not the one it monitors (here: the
    # link's) once failover-timeout has passed since it saw it: long enough that it never does here
    setup = SentinelSetup(down_after_ms=1000, failover_ms=60_000, link=True)
    sim = Simulator(seed=3)
    rec = Receiver(random.Random(5))
    runner = web.AppRunner(web.Application(), access_log=None, shutdown_timeout=1)
    runner.app.router.add_post("/hook", rec.handle)
    workers: Workers | None = None
    api_proc = None
    polls: list[tuple[float, int]] = []
    sampler: asyncio.Task[None] | None = None
    try:
        await setup.start()
        await sim.start()
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        hook = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        port = free_port()
        env = fault_env(setup.url(), port, RELAY_REDIS_MIN_REPLICAS=str(replicas), RELAY_REDIS_WAIT_TIMEOUT="1")
        api_proc = start_api(env, logdir)
        workers = Workers(2, env, logdir)
        api = f"http://127.0.0.1:{port}"
        await wait_ready(api)
        workers.start_all()
        print(f"failover, RELAY_REDIS_MIN_REPLICAS={replicas}: {jobs} jobs, 2 workers, logs in {logdir}", flush=True)

        async def sample() -> None:
            while True:
                polls.append((time.monotonic(), sim.total_polls))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        created: list[float] = []
        async with aiohttp.ClientSession() as session:
            registering = asyncio.create_task(
                register(session, api, sim, hook, jobs, parallel=16, spread=REGISTER_OVER, longest=30, created=created)
            )
            await asyncio.sleep(KILL_AT)
            assert setup.link is not None
            setup.link.stall()
            await asyncio.sleep(STALL)
            old = await setup.kill_primary()
            killed = time.monotonic()
            dropped = await setup.link.cut()
            promoted = await setup.wait_promoted(old)
            print(f"  primary SIGKILLed; {dropped:,} bytes it had sent never reached the replica", flush=True)
            print(f"  the Sentinels promoted the replica after {promoted:.1f} s", flush=True)
            await asyncio.sleep(RESTART_AFTER)
            await setup.restart_old_primary(old)
            print("  the old primary restarted as a replica of the new one", flush=True)
            job_ids = await registering
        print(f"  registered {len(job_ids)} jobs in {time.monotonic() - started:.0f} s", flush=True)

        timeline = Timeline(started, killed, promoted, created, polls)
        await settle_and_audit(result, setup.url(), job_ids, rec, workers, timeline, limit, "Sentinels promoted")
    finally:
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        if workers is not None:
            workers.stop_all()
        if api_proc is not None:
            api_proc.terminate()
            api_proc.wait(30)
        await runner.cleanup()
        await sim.stop()
        await setup.cleanup()
    return result


async def main(jobs: int, limit: float, bench: bool) -> int:
    runs = [await run(replicas, jobs, limit) for replicas in (0, 1)]
    for r in runs:
        print(f"failover, RELAY_REDIS_MIN_REPLICAS={r.replicas}: events lost {r.lost}")
    strict = runs[1]
    print("failover: PASS" if strict.ok else "failover: FAIL (RELAY_REDIS_MIN_REPLICAS=1 must lose nothing)")
    code = 0 if strict.ok else 1
    if bench:
        from tests.durability_bench import main as bench_main

        print(flush=True)
        await bench_main(rounds=2)
    return code


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--limit", type=float, default=240, help="seconds before giving up, per run")
    parser.add_argument("--no-bench", dest="bench", action="store_false", help="skip the cost of the setting")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.jobs, args.limit, args.bench)))
