"""Section 2: delivery throughput of one worker vs a bare aiohttp POST loop (same concurrency, same body size).

Both sides are measured by the receiver's count between 10% and 90% of their total (ramp-up and tail
left out), with CPU times sampled at the same two instants.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from relay.core.changes import completion_event
from relay.core.ops import JobOp
from relay.core.schema import Job, JobStatus, Phase
from relay.store import keys
from tests.bench import floors, peers
from tests.bench.costs import floor_rows, interleave, median, throughput_rows
from tests.bench.harness import SECRET, Harness, Run
from tests.bench.loadgen import padded_body
from tests.bench.measure import Meter
from tests.bench.parts import delivery_parts
from tests.bench.profile import profile

__all__ = ["insert_terminal_events", "run"]

CONCURRENCY = 200


async def insert_terminal_events(h: Harness, count: int, receiver: str) -> int:
    """``count`` jobs, each with one pending job.completed event (through Store.register + Store.apply_job)."""
    item = {
        "id": "01SIMULATEDITEM",
        "name": "Copy of LargeFolder1",
        "size": 12019,
        "folder": {"childCount": 12},
        "webUrl": "https://contoso-my.sharepoint.com/personal/me_contoso_com/Documents/Copy%20of%20LargeFolder1",
        "parentReference": {"driveId": peers.DRIVE_ID, "driveType": "business", "path": "/drive/root:/Documents"},
    }
    size = 0
    ids = [uuid.uuid4().hex for _ in range(count)]
    await peers.register(
        h.store,
        (
            (
                jid,
                peers.job_fields(h.vault, f"{receiver}/hook", metadata={"requestId": f"r-{i:06d}"}),
                f"http://127.0.0.1:1029/monitor/{jid}",
            )
            for i, jid in enumerate(ids)
        ),
    )
    it = iter(ids)

    async def run() -> None:
        nonlocal size
        for jid in it:
            metadata = json.dumps({"requestId": "r-000000"})
            job = Job.from_hash(jid, Job(operation="ItemCopy", resource_id=str(item["id"]), metadata=metadata).fields)
            event = completion_event(job, int(time.time() * 1000), item, None)
            size = len(event["body"].encode())
            op = JobOp(
                job=jid,
                prev_seq=0,
                set=Job(status=JobStatus.COMPLETED, percentage=100.0, phase=Phase.DONE),
                events=[event],
                terminal=True,
            )
            await h.store.apply_job(op)

    await asyncio.gather(*(run() for _ in range(32)))
    # nothing to poll: this section measures deliveries only
    await h.redis.delete(keys.MONITORS, keys.sched_lanes(keys.MONITORS))
    return size


async def counted_window(h: Harness, receiver: str, total: int, meter: Meter, timeout: float) -> tuple[Run, bool]:
    """(the window between 10% and 90% of ``total`` arrivals at the receiver, whether 90% arrived in time)."""
    samples = []
    deadline = time.monotonic() + timeout
    for threshold in (0.1 * total, 0.9 * total):
        while (count := await peers.received_count(h.http, receiver)) < threshold:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        samples.append((count, meter.sample()))
    (c0, s0), (c1, s1) = samples
    return Run(c1 - c0, Meter.between(s0, s1)), c1 >= 0.9 * total


async def floor_window(h: Harness, receiver: str, receiver_pid: int, n: int, size: int) -> Run:
    """The delivery floor (tests/bench/floors.py) over ``n`` stored bodies of ``size`` bytes, counted like relay."""
    await h.fresh_redis()
    await peers.reset_receiver(h.http, receiver)
    await floors.seed_outbox(h.redis, [padded_body(size)] * n)
    url = h.redis_server.url
    loop = await h.start_helper(
        "floorloop", "--method", "POST", "--url", f"{receiver}/hook", "--redis-url", url,
        "--concurrency", str(CONCURRENCY),
    )  # fmt: skip
    result, _ = await counted_window(h, receiver, n, h.meter(floor=loop.pid, receiver=receiver_pid), 180)
    answer = await loop.result()
    if answer["errors"] or answer["acked"] != n:
        h.note(f"delivery floor: {answer}")
    return result


async def run(h: Harness) -> None:
    n: int = h.args.deliveries
    rec_proc, receiver = h.spawn_server("receiver")
    worker = None
    try:
        await h.fresh_redis()
        t = time.monotonic()
        size = await insert_terminal_events(h, n, receiver)
        h.say(f"inserted {n:,} jobs x 1 job.completed ({size} B bodies) in {time.monotonic() - t:.1f} s")

        async def baseline() -> Run:
            """A bare aiohttp POST loop, same concurrency, same body size (2n POSTs: it is faster)."""
            await peers.reset_receiver(h.http, receiver)
            loop = await h.start_helper(
                "postloop", "--url", f"{receiver}/hook", "--size", str(size),
                "--concurrency", str(CONCURRENCY), "--count", str(2 * n),
            )  # fmt: skip
            result, _ = await counted_window(h, receiver, 2 * n, h.meter(client=loop.pid, receiver=rec_proc.pid), 180)
            await loop.result()
            h.say(f"bare loop: {result.rate:,.0f} POSTs/s; {result.window.text()}")
            return result

        bare = [await baseline()]
        inserted = True  # the events above are the first relay window's
        arrived: list[bool] = []

        async def relay_window() -> Run:
            nonlocal inserted
            if not inserted:
                await h.fresh_redis()
                await insert_terminal_events(h, n, receiver)
            inserted = False
            await peers.reset_receiver(h.http, receiver)
            worker = await h.start_worker(h.relay_env(RELAY_DELIVERY_CONCURRENCY=CONCURRENCY))
            try:
                run, done = await counted_window(h, receiver, n, h.meter(worker=worker.pid, receiver=rec_proc.pid), 180)
                h.say(f"relay: {run.rate:,.0f} deliveries/s; {run.window.text()}")
                if not done:
                    got = await peers.received_count(h.http, receiver)
                    h.note(f"deliveries: only {got} of {n} arrived within 180 s")
                arrived.append(done)
            finally:
                h.stop(worker)
            return run

        async def floor() -> Run:
            run = await floor_window(h, receiver, rec_proc.pid, n, size)
            h.say(f"floor (POST loop fed from Redis, acks batched): {run.rate:,.0f} deliveries/s; {run.window.text()}")
            return run

        relay, lowest = await interleave(h, relay_window, floor)
        done = all(arrived)
        bare.append(await baseline())
        if h.args.profile:
            more = int(
                min(120_000, max(4000, median([r.rate for r in relay]) * 12))
            )  # enough to keep it busy for the 10 s profile
            await h.fresh_redis()
            await insert_terminal_events(h, more, receiver)
            worker = await h.start_worker(h.relay_env(RELAY_DELIVERY_CONCURRENCY=CONCURRENCY))
            await profile(h, worker.pid, 10, "section 2: delivering", median([r.us("worker") for r in relay]))
        throughput_rows(
            h,
            key="delivery",
            figure=f"2 delivery throughput, 1 worker vs bare POST loop ({CONCURRENCY} in flight, {size} B)",
            unit="delivery",
            relay=relay,
            relay_proc="worker",
            bare=bare,
            bare_proc="client",
            peers=("receiver",),
            ok=done,
        )
        floor_rows(
            h, number="2", unit="delivery", floor_is="POST loop fed from Redis, acks batched",
            bare_is="bare POST loop", relay=relay, relay_proc="worker", floor=lowest, bare=bare,
            parts=delivery_parts(padded_body(size), SECRET),
        )  # fmt: skip
    finally:
        h.stop(worker, rec_proc)
