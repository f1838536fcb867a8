"""``--instructions``: instructions per poll, delivery and registration, counted by callgrind.

``perf stat`` cannot count instructions on a machine without a PMU (a VM: ``<not supported>``), so
the process measured runs under ``valgrind --tool=callgrind --instr-atstart=no``: at native-ish speed
(JIT only) until its window opens, when ``callgrind_control -i on`` starts counting, and ``-i off`` stops
it ``WINDOW`` seconds later; the operations done in between come from the same counters as rows 1-3
(the simulator's polls, the receiver's arrivals, the load generator's marked window). Each pair is relay's
process against the bare side's own process doing the same HTTP work: the worker against the bare GET or
POST loop, ``relay serve`` against the hello world server. Redis is not under callgrind (its CPU per
operation is in rows 1-3). Under callgrind a process runs some 50 times slower, so it is the bottleneck
of its pair and works in large batches, as a saturated process does.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path

from relay.store import keys
from tests.bench import deliver, floors, parts, peers, poll, register
from tests.bench.costs import OWN_CODE_TARGET
from tests.bench.harness import SECRET, Harness
from tests.bench.loadgen import padded_body
from tests.bench.report import ROOT

__all__ = ["run"]

WINDOW = 15.0
START_TIMEOUT = 180.0


def callgrind(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}/%p.out"]


def toggle(pid: int, on: bool) -> None:
    subprocess.run(  # noqa: S603
        ["callgrind_control", "-i", "on" if on else "off", str(pid)],  # noqa: S607
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


def total_instructions(out: Path, pid: int) -> int:
    """Instructions counted for ``pid`` (the process has exited, so its dump is complete)."""
    total = 0
    for dump in out.glob(f"{pid}.out*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    return total


#: (seconds the toggle off took, operations done meanwhile) of each window: instrumented, so counted since 2026-12-07
LATE: list[tuple[float, int]] = []


async def counted(pid: int, count: Callable[[], Awaitable[int]]) -> int:
    """Operations done while ``pid`` was instrumented for about WINDOW seconds: each count is read once
    ``callgrind_control`` has answered, its toggle in effect, so every operation counted in instructions is
    counted here too (it takes a second or more on a busy machine: :func:`stop_counting`)."""
    await asyncio.to_thread(toggle, pid, True)
    c0 = await count()
    await asyncio.sleep(WINDOW)
    return await stop_counting(pid, count) - c0


async def stop_counting(pid: int, count: Callable[[], Awaitable[int]]) -> int:
    """Stop counting ``pid``'s instructions, then read ``count``: the operations done while callgrind_control
    started up and was answered were instrumented, and are counted (read before the toggle, they were left out
    and their instructions spread over the others: 10-16% more per delivery on a loaded machine)."""
    before, started = await count(), time.monotonic()
    await asyncio.to_thread(toggle, pid, False)
    after = await count()
    LATE.append((time.monotonic() - started, after - before))
    return after


async def polls(h: Harness, out: Path) -> tuple[float, float]:
    sim_proc, sim = h.spawn_server("sim")
    rec_proc, receiver = h.spawn_server("receiver")
    worker = loop = None
    try:
        urls = await poll.stuck_monitors(h, sim, receiver, 500)
        urls_file = h.tmp / "instructions-urls.txt"
        urls_file.write_text("\n".join(urls))
        env = h.relay_env(RELAY_POLL_CONCURRENCY=200, RELAY_POLL_INITIAL_INTERVAL=0.01, RELAY_POLL_MAX_INTERVAL=0.01)
        worker = await h.start_worker(env, callgrind(out), START_TIMEOUT)
        await asyncio.sleep(5)
        relay_ops = await counted(worker.pid, lambda: peers.sim_total(h.http, sim))
        h.stop(worker)
        relay = total_instructions(out, worker.pid) / max(relay_ops, 1)
        worker = None
        # the parts, counted alone below: a monitor as a claim reads it once polled, and its answer
        member, state = await poll.claimed_state(h)
        async with h.http.get(urls[0]) as resp:
            answer = (resp.status, dict(resp.headers), await resp.read())
        parts.save_poll(str(h.tmp / "instructions-poll.json"), member, state, answer)
        loop = await h.start_helper(
            "getloop", "--urls-file", str(urls_file), "--concurrency", "200", "--duration", str(WINDOW + 60),
            wrapper=callgrind(out),
        )  # fmt: skip
        await h.wait_until(_polled_since(h, sim, await peers.sim_total(h.http, sim)), START_TIMEOUT)
        bare_ops = await counted(loop.pid, lambda: peers.sim_total(h.http, sim))
        await loop.stop()
        bare = total_instructions(out, loop.pid) / max(bare_ops, 1)
        # the floor: the GET loop fed from Redis, each answer written back (tests/bench/floors.py)
        await h.redis.delete(floors.OUTBOX, "bench:floor:acks")
        await floors.seed_outbox(h.redis, urls)
        loop = await h.start_helper(
            "floorloop", "--method", "GET", "--redis-url", h.redis_server.url, "--concurrency", "200",
            "--duration", str(START_TIMEOUT + WINDOW + 60), wrapper=callgrind(out),
        )  # fmt: skip
        await h.wait_until(_polled_since(h, sim, await peers.sim_total(h.http, sim)), START_TIMEOUT)
        floor_ops = await counted(loop.pid, lambda: peers.sim_total(h.http, sim))
        await loop.stop()
        h.costs["instructions_floor"] = {"poll": total_instructions(out, loop.pid) / max(floor_ops, 1)}
        h.say(f"polls: worker {relay_ops} polls in the window, bare loop {bare_ops}, floor {floor_ops}")
        return relay, bare
    finally:
        h.stop(worker, sim_proc, rec_proc)


def _polled_since(h: Harness, sim: str, start: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await peers.sim_total(h.http, sim) > start + 100

    return check


async def deliveries(h: Harness, out: Path) -> tuple[float, float]:
    rec_proc, receiver = h.spawn_server("receiver")
    worker = None
    try:
        await h.fresh_redis()
        size = await deliver.insert_terminal_events(h, 8000, receiver)
        # uninstrumented, the worker would deliver them all before a window opened: due in an hour until it is
        members = await h.redis.zrange(keys.DELIVERIES, 0, -1)  # the default lane: no API tokens here
        await h.redis.zadd(keys.DELIVERIES, dict.fromkeys(members, 4e12))
        await h.redis.zadd(keys.sched_lanes(keys.DELIVERIES), {"": 4e12})
        worker = await h.start_worker(h.relay_env(RELAY_DELIVERY_CONCURRENCY=200), callgrind(out), START_TIMEOUT)
        await asyncio.sleep(3)
        await asyncio.to_thread(toggle, worker.pid, True)
        await h.redis.zadd(keys.DELIVERIES, dict.fromkeys(members, 0))
        await h.redis.zadd(keys.sched_lanes(keys.DELIVERIES), {"": 0})
        await h.redis.publish(keys.sched_wake(keys.DELIVERIES), "0")  # the idle worker sleeps until woken
        await asyncio.sleep(WINDOW)
        relay_ops = await stop_counting(worker.pid, lambda: peers.received_count(h.http, receiver))
        h.stop(worker)
        relay = total_instructions(out, worker.pid) / max(relay_ops, 1)
        worker = None
        await peers.reset_receiver(h.http, receiver)
        loop = await h.start_helper(
            "postloop", "--url", f"{receiver}/hook", "--size", str(size), "--concurrency", "200",
            "--count", "1000000", wrapper=callgrind(out),
        )  # fmt: skip

        async def posting() -> bool:
            return await peers.received_count(h.http, receiver) > 100

        await h.wait_until(posting, START_TIMEOUT)
        bare_ops = await counted(loop.pid, lambda: peers.received_count(h.http, receiver))
        await loop.stop()
        bare = total_instructions(out, loop.pid) / max(bare_ops, 1)
        # the floor: the POST loop fed from Redis, each delivery acknowledged with a batched write (floors.py)
        await h.fresh_redis()
        await peers.reset_receiver(h.http, receiver)
        await floors.seed_outbox(h.redis, [padded_body(size)] * 8000)
        loop = await h.start_helper(
            "floorloop", "--method", "POST", "--url", f"{receiver}/hook", "--redis-url", h.redis_server.url,
            "--concurrency", "200", wrapper=callgrind(out),
        )  # fmt: skip
        await h.wait_until(posting, START_TIMEOUT)
        floor_ops = await counted(loop.pid, lambda: peers.received_count(h.http, receiver))
        await loop.stop()
        h.costs["instructions_floor"] = {"delivery": total_instructions(out, loop.pid) / max(floor_ops, 1)}
        (h.tmp / "instructions-delivery-body.txt").write_text(padded_body(size))
        h.say(f"deliveries: worker {relay_ops} in the window, bare loop {bare_ops}, floor {floor_ops}")
        return relay, bare
    finally:
        h.stop(worker, rec_proc)


async def registrations(h: Harness, out: Path) -> tuple[float, float]:
    """relay serve and hello world per registration; the floor server (one batched Redis write) beside them."""
    api = hello_proc = floor_proc = None
    results: list[float] = []
    try:
        await h.fresh_redis()
        api, base = await h.start_api(h.relay_env(), callgrind(out), START_TIMEOUT)
        hello_proc, hello = h.spawn_server("hello", wrapper=callgrind(out))
        floor_proc, floor = h.spawn_server("floor", "--redis-url", h.redis_server.url, wrapper=callgrind(out))
        for url, proc in ((f"{base}/v1/jobs", api), (f"{hello}/v1/jobs", hello_proc), (f"{floor}/v1/jobs", floor_proc)):
            pid = proc.pid
            args = ["--body", register.BODY, "--concurrency", "64", "--warmup", "5", "--duration", str(WINDOW)]

            def on_mark(mark: str, pid: int = pid) -> None:
                toggle(pid, mark == "window-start")

            result = await h.helper("loadgen", "--url", url, *args, on_mark=on_mark)
            proc.terminate()
            proc.wait(60)
            results.append(total_instructions(out, pid) / max(result["ok_in_window"], 1))
            h.say(f"registrations: {result['ok_in_window']} in the window ({url.split('/v1')[0]})")
        relay, hello_count, floor_count = results
        h.costs["instructions_floor"] = {"registration": floor_count}
        return relay, hello_count
    finally:
        h.stop(api, hello_proc, floor_proc)


#: what each row's floor is (tests/bench/floors.py)
_FLOORS = {
    "poll": "GET loop fed from Redis, writes batched",
    "delivery": "POST loop fed from Redis, acks batched",
    "registration": "hello world + one batched Redis write",
}
PARTS_COUNT = 1000
_COUNT_PARTS = (
    "import sys; from tests.bench import parts; parts.count_parts(*sys.argv[1:4], int(sys.argv[4]), only=sys.argv[5])"
)


def _parts_input(h: Harness, unit: str) -> str:
    """What :func:`tests.bench.parts.unit_calls` makes ``unit``'s parts of (the same inputs as rows 1-3's)."""
    if unit == "registration":
        return register.BODY
    if unit == "delivery":
        return (h.tmp / "instructions-delivery-body.txt").read_text()
    return str(h.tmp / "instructions-poll.json")


async def parts_instructions(h: Harness, out: Path, unit: str) -> dict[str, float]:
    """Instructions per call of each part ``unit`` cannot skip (tests/bench/parts.py), each part counted alone in
    a process of its own under callgrind, counting only its ``PARTS_COUNT`` calls."""
    counts: dict[str, float] = {}
    body, secret = _parts_input(h, unit), SECRET
    for name in parts.unit_calls(unit, body, secret, 1):
        # one process for each part, so each total is that part's alone
        proc = await asyncio.create_subprocess_exec(
            *callgrind(out), sys.executable, "-c",
            _COUNT_PARTS,
            unit, body, secret, str(PARTS_COUNT), name, cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()
        counts[name] = total_instructions(out, proc.pid) / PARTS_COUNT
    return counts


async def run(h: Harness, sections: Collection[int] = (1, 2, 3)) -> None:
    """Instructions per operation of rows 1-3 (``sections``: which of them)."""
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        h.note("--instructions: valgrind (with callgrind_control) is not installed")
        return
    out = h.tmp / "callgrind"
    out.mkdir()
    for label, unit, measure, sides in (
        ("I1", "poll", polls, "worker vs bare GET loop"),
        ("I2", "delivery", deliveries, "worker vs bare POST loop"),
        ("I3", "registration", registrations, "relay serve vs hello world server"),
    ):
        if int(label[1]) not in sections:
            continue
        print(f"\n[{label}] instructions per {unit}", flush=True)
        relay, bare = await measure(h, out)
        h.info(f"{label} instructions per {unit}: {sides} (callgrind)", f"{relay:,.0f}", f"{bare:,.0f}", relay / bare)
        floor = h.costs.get("instructions_floor", {}).get(unit)
        if floor:
            figure = f"{label} instructions per {unit}: relay vs its floor ({_FLOORS[unit]})"
            h.info(figure, f"{relay:,.0f}", f"{floor:,.0f}", relay / floor)
            alone = await parts_instructions(h, out, unit)
            own = relay - floor
            h.add(
                f"{label} relay's own code per {unit} in instructions (relay - floor) vs the parts it cannot skip",
                f"{own:,.0f}",
                f"{sum(alone.values()):,.0f} ({', '.join(f'{name} {n:,.0f}' for name, n in alone.items())})",
                own / sum(alone.values()),
                f"<= {OWN_CODE_TARGET:.2f}",
                own <= OWN_CODE_TARGET * sum(alone.values()),
            )
    h.note(f"instructions: counted over {WINDOW:g} s windows under callgrind; dumps in {out}")
    if LATE:
        h.note(
            "instructions: stopping the count took "
            + ", ".join(f"{seconds:.1f} s ({ops} operations)" for seconds, ops in LATE)
            + " (in order: relay, bare, floor per row); those operations are counted"
        )
