"""Section 1: poll throughput of one worker vs a bare aiohttp GET loop of the same concurrency.

Both sides GET the same simulator monitors (stuck at 0%: no events after the first) and are counted
by the simulator's own counter over the same kind of window; the bare loop runs before and after
relay, so a machine busy in one of them is averaged out, and relay's windows interleave with its floor's
(``--rounds``), a worker started afresh for each.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

from relay.core.schema import MONITOR_JOB_PREFIX
from relay.store import keys
from tests.bench import floors, peers
from tests.bench.costs import floor_rows, interleave, throughput_rows
from tests.bench.harness import Harness, Run
from tests.bench.measure import Meter
from tests.bench.parts import poll_parts
from tests.bench.profile import profile

__all__ = ["bare_get_loop", "polls_in_window", "run", "stuck_monitors"]

CONCURRENCY, WARM, WINDOW = 200, 5.0, 15.0


async def stuck_monitors(h: Harness, sim: str, receiver: str, n: int, **knobs: object) -> list[str]:
    """``n`` simulator copies stuck at 0% for an hour, each registered as one job; their monitor URLs."""
    ops = await peers.sim_create(h.http, sim, [{"duration": 3600, "stuck": True, **knobs}] * n)
    await h.fresh_redis()
    await peers.register(
        h.store,
        ((uuid.uuid4().hex, peers.job_fields(h.vault, f"{receiver}/hook"), op["monitorUrl"]) for op in ops),
    )
    return [op["monitorUrl"] for op in ops]


async def polls_in_window(h: Harness, sim: str, meter: Meter, window: float) -> Run:
    """Monitor GETs the simulator answered in ``window`` seconds, with the meter's CPU over the same span."""
    a = meter.sample()
    p0 = await peers.sim_total(h.http, sim)
    await asyncio.sleep(window)
    p1 = await peers.sim_total(h.http, sim)
    b = meter.sample()
    return Run(p1 - p0, Meter.between(a, b))


async def bare_get_loop(
    h: Harness,
    sim_proc: subprocess.Popen[bytes],
    sim: str,
    urls_file: Path,
    concurrency: int,
    warm: float,
    window: float,
) -> Run:
    """The bare GET loop over the monitors in ``urls_file``: GETs and CPU over ``window`` after ``warm``."""
    loop = await h.start_helper(
        "getloop", "--urls-file", str(urls_file), "--concurrency", str(concurrency),
        "--duration", str(warm + window + 2),
    )  # fmt: skip
    await asyncio.sleep(warm)
    result = await polls_in_window(h, sim, h.meter(client=loop.pid, simulator=sim_proc.pid), window)
    await loop.result()
    return result


async def floor_window(h: Harness, sim_proc: subprocess.Popen[bytes], sim: str, urls: list[str]) -> Run:
    """The poll floor (tests/bench/floors.py) over the same monitors, counted by the simulator like both sides.
    Its keys are its own: relay's jobs stay in Redis for relay's next window."""
    await h.redis.delete(floors.OUTBOX, "bench:floor:acks")
    await floors.seed_outbox(h.redis, urls)
    loop = await h.start_helper(
        "floorloop", "--method", "GET", "--redis-url", h.redis_server.url,
        "--concurrency", str(CONCURRENCY), "--duration", str(WARM + WINDOW + 2),
    )  # fmt: skip
    await asyncio.sleep(WARM)
    result = await polls_in_window(h, sim, h.meter(floor=loop.pid, simulator=sim_proc.pid), WINDOW)
    answer = await loop.result()
    if answer["errors"] or answer["acked"] != answer["ok"]:
        h.note(f"poll floor: {answer}")
    return result


async def claimed_state(h: Harness) -> tuple[str, dict[str, Any]]:
    """One monitor and its jobs as claim_monitors.lua hands them to a poll: (member, {monitor: its fields, jobs:
    {id: fields}})."""
    member = (await h.redis.zrange(keys.MONITORS, 0, 0))[0]
    fields = await h.redis.hgetall(keys.monitor(member))  # type: ignore[misc]  # redis-py 5 types sync|async
    jobs: dict[str, Any] = {}
    for jid in sorted(name[len(MONITOR_JOB_PREFIX) :] for name in fields if name.startswith(MONITOR_JOB_PREFIX)):
        jobs[jid] = await h.redis.hgetall(keys.job(jid))  # type: ignore[misc]
    return member, {"monitor": fields, "jobs": jobs}


async def run(h: Harness) -> None:
    n: int = h.args.poll_jobs
    sim_proc, sim = h.spawn_server("sim")
    rec_proc, receiver = h.spawn_server("receiver")
    try:
        urls = await stuck_monitors(h, sim, receiver, n)
        urls_file = h.tmp / "monitor-urls.txt"
        urls_file.write_text("\n".join(urls))

        async def baseline() -> Run:
            result = await bare_get_loop(h, sim_proc, sim, urls_file, CONCURRENCY, WARM, WINDOW)
            h.say(f"bare loop: {result.rate:,.0f} monitor GETs/s; {result.window.text()}")
            return result

        bare = [await baseline()]
        # relay: one worker, every monitor due every 10 ms (the registrations above made them due now)
        env = h.relay_env(
            RELAY_POLL_CONCURRENCY=CONCURRENCY, RELAY_POLL_INITIAL_INTERVAL=0.01, RELAY_POLL_MAX_INTERVAL=0.01
        )
        state: list[tuple[str, dict[str, Any]]] = []

        async def first_events_delivered() -> bool:
            return await peers.received_count(h.http, receiver) >= n

        async def relay_window() -> Run:
            worker = await h.start_worker(env)
            try:
                await h.wait_until(first_events_delivered, 60)
                await asyncio.sleep(2)
                run = await polls_in_window(h, sim, h.meter(worker=worker.pid, simulator=sim_proc.pid), WINDOW)
                h.say(f"relay: {run.rate:,.0f} monitor GETs/s; {run.window.text()}")
                if h.args.profile and not state:
                    await profile(h, worker.pid, 10, "section 1: polling", run.us("worker"))
            finally:
                h.stop(worker)
            if not state:  # a monitor as a claim reads it once polled at steady state (stuck at 0%)
                state.append(await claimed_state(h))
            return run

        async def floor() -> Run:
            run = await floor_window(h, sim_proc, sim, urls)
            h.say(
                f"floor (GET loop fed from Redis, writes batched): {run.rate:,.0f} monitor GETs/s; {run.window.text()}"
            )
            return run

        relay, lowest = await interleave(h, relay_window, floor)
        bare.append(await baseline())  # before and after relay: a machine busy in one is averaged out
        async with h.http.get(urls[0]) as resp:  # a monitor's answer, as the worker receives it
            answer = (resp.status, dict(resp.headers), await resp.read())
        throughput_rows(
            h,
            key="poll",
            figure=f"1 poll throughput, 1 worker vs bare loop ({CONCURRENCY} in flight, {n:,} monitors)",
            unit="poll",
            relay=relay,
            relay_proc="worker",
            bare=bare,
            bare_proc="client",
            peers=("simulator",),
        )
        floor_rows(
            h, number="1", unit="poll", floor_is="GET loop fed from Redis, writes batched",
            bare_is="bare GET loop", relay=relay, relay_proc="worker", floor=lowest, bare=bare,
            parts=poll_parts(*state[0], answer),
        )  # fmt: skip
    finally:
        h.stop(sim_proc, rec_proc)
