"""Section 4: 10,000 tracked jobs (20-60 s copies): completion lag vs the poll interval in force; then Redis memory.

Each job's lag (its completion at the simulator -> job.completed at the receiver) is compared with
the interval between its last two polls plus one second.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid

from tests.bench import peers
from tests.bench.harness import Harness
from tests.bench.measure import Meter, pct, rss_mib
from tests.bench.memory import memory_per_job

__all__ = ["run"]


async def run(h: Harness) -> None:
    n: int = h.args.scale_jobs
    if n == 0:  # --scale-jobs 0: the memory figures alone
        await memory_per_job(h)
        return
    rng = random.Random(4)
    sim_proc, sim = h.spawn_server("sim")
    rec_proc, receiver = h.spawn_server("receiver")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await h.fresh_redis()
        env = h.relay_env(RELAY_POLL_INITIAL_INTERVAL=1, RELAY_POLL_MAX_INTERVAL=60)
        for _ in range(h.args.scale_workers):
            workers.append(await h.start_worker(env))
        procs = {f"worker{i}": w.pid for i, w in enumerate(workers)} | {"simulator": sim_proc.pid}
        meter = h.meter(**procs)
        c0 = meter.sample()
        started = time.monotonic()
        job_of_op: dict[str, str] = {}
        chunk = 1000
        for i in range(0, n, chunk):
            knobs = [{"duration": rng.uniform(20, 60)} for _ in range(min(chunk, n - i))]
            ops = await peers.sim_create(h.http, sim, knobs, record=True)
            specs = []
            for op in ops:
                jid = uuid.uuid4().hex
                job_of_op[op["id"]] = jid
                fields = peers.sim_job_fields(h.vault, sim, receiver, metadata={"i": i})
                specs.append((jid, fields, op["monitorUrl"]))
            await peers.register(h.store, specs)
        h.say(f"{n:,} jobs registered in {time.monotonic() - started:.1f} s")

        async def all_completed() -> bool:
            rows = await peers.received(h.http, receiver, "c")
            return len(rows) >= n

        done = await h.wait_until(all_completed, 60 + 90, 1.0)
        h.say(Meter.between(c0, meter.sample()).text())
        peaks = ", ".join(
            f"{name} {rss_mib(w.pid, peak=True):.0f} MiB" for name, w in zip(procs, workers, strict=False)
        )
        h.note(f"scale: peak resident memory of the worker process(es): {peaks}")
        completed = {row[2]: row[0] for row in await peers.received(h.http, receiver, "c")}
        all_events = await peers.received_count(h.http, receiver)
        polls = (await peers.sim_polls(h.http, sim))["ops"]
        lags, bounds, excess, detect, pipeline = [], [], [], [], []
        resolve: list[float] = []  # completing poll -> DriveItem GET (the arq resolution task ran)
        deliver: list[float] = []  # DriveItem GET -> job.completed at the receiver (delivery queue)
        poll_counts = []
        for op_id, info in polls.items():
            found = job_of_op.get(op_id)
            if found is None or found not in completed:
                continue
            jid = found
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
            h.note(f"scale: {missing} of {n} jobs had no job.completed within the time limit")
        if not lags:
            h.add("4 scale: completion lag", "no data", "", None, "", False)
        else:
            within = sum(1 for lag, b in zip(lags, bounds, strict=True) if lag <= b) / len(lags)
            p99_lag, p99_bound = pct(lags, 0.99), pct(bounds, 0.99)
            h.note(
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
            h.add(
                f"4 scale: p99 completion lag, {n:,} jobs (20-60 s), {len(workers)} worker",
                f"{p99_lag:.2f} s (p50 {pct(lags, 0.5):.2f})",
                f"{p99_bound:.2f} s (p99 interval+1 s)",
                p99_lag / p99_bound,
                "<= 1.00",
                p99_lag <= p99_bound and missing == 0,
            )
            h.add(
                "4 scale: jobs whose lag <= own poll interval + 1 s",
                f"{within:.1%}",
                "",
                None,
                ">= 99%",
                within >= 0.99 and missing == 0,
            )
    finally:
        h.stop(*workers, sim_proc, rec_proc)
    await memory_per_job(h)
