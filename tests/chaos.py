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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from relay.store.embedded import EmbeddedRedis
from tests.faults import (
    Workers,
    audit,
    fault_env,
    print_audit,
    register,
    start_api,
    start_peers,
    wait_drained,
    wait_ready,
)
from tests.helpers import free_port


async def main(jobs: int, limit: float) -> int:
    started = time.monotonic()
    rng = random.Random(1)
    logdir = Path(tempfile.mkdtemp(prefix="relay-chaos-"))
    redis_server = EmbeddedRedis(appendonly=True, data_dir=str(logdir / "redis"))
    (logdir / "redis").mkdir()
    async with contextlib.AsyncExitStack() as stack:  # what started is stopped, even when a later start fails
        redis_server.start()
        stack.callback(redis_server.stop)
        sim, rec, hook = await start_peers(stack)

        port = free_port()
        env = fault_env(redis_server.url, port)
        api_proc = start_api(env, logdir)
        stack.callback(_stop, api_proc)
        workers = Workers(3, env, logdir)
        stack.callback(workers.stop_all)
        api = f"http://127.0.0.1:{port}"
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
        print_audit(job_ids, rec, figures)
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
        return 0 if ok else 1


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--limit", type=float, default=480, help="seconds before giving up")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.jobs, args.limit)))
