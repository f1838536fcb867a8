"""Section 9 (issue 16): one tenant's 50,000 jobs must not hold up another tenant's one.

Two API tokens (``RELAY_API_TOKENS=a:…,b:…``). Tenant A registers 50,000 long copies in bulk through the
API (``POST /v1/jobs`` with token A, 64 at a time) while one worker runs with the default poll intervals
(1 s, backing off to 60 s): A's monitors pile up due. Then tenant B registers one 3-second copy with
``progressInterval: 1``, so B's poll interval in force is at most 1 s. B's completion lag (the copy's
end at the simulator -> job.completed at the receiver) must stay within that interval + 1 s.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from relay.store import keys
from tests.bench import peers
from tests.bench.harness import SECRET, Harness

__all__ = ["run"]

TOKENS = {"a": "bench-token-tenant-a", "b": "bench-token-tenant-b"}
B_DURATION, B_INTERVAL = 3.0, 1.0


async def run(h: Harness) -> None:
    n: int = h.args.fair_jobs
    env = h.relay_env(
        RELAY_API_TOKENS=",".join(f"{name}:{token}" for name, token in TOKENS.items()),
        RELAY_TENANT_SIGNING_SECRETS=",".join(f"{name}:{SECRET}" for name in TOKENS),  # one receiver for both
        # the backlog is the point here: A's registrations are not held to the default 500 a second
        RELAY_TENANT_REGISTRATIONS_PER_SECOND="0",
    )
    sim_proc, sim = h.spawn_server("sim")
    rec_proc, receiver = h.spawn_server("receiver")
    worker = api = None
    try:
        await h.fresh_redis()
        worker = await h.start_worker(env)
        api, base = await h.start_api(env)
        ops = await peers.sim_create(h.http, sim, [{"duration": 3600.0}] * n)
        urls = h.tmp / "tenant-a-monitors.txt"
        urls.write_text("\n".join(op["monitorUrl"] for op in ops))
        template = json.dumps({"monitorUrl": "{url}", "callbackUrl": f"{receiver}/hook"})
        started = time.monotonic()
        result = await h.helper(
            "bulk", "--url", f"{base}/v1/jobs", "--template", template, "--values", str(urls),
            "--token", TOKENS["a"], "--concurrency", "64",
        )  # fmt: skip
        registered = result["statuses"].get("201", 0)
        h.say(
            f"tenant A: {registered:,} of {n:,} jobs registered through the API in {time.monotonic() - started:.1f} s"
        )
        overdue = await overdue_monitors(h)
        (op,) = await peers.sim_create(h.http, sim, [{"duration": B_DURATION}], record=True)
        body = {"monitorUrl": op["monitorUrl"], "callbackUrl": f"{receiver}/hook", "progressInterval": B_INTERVAL}
        headers = {"Authorization": f"Bearer {TOKENS['b']}"}
        b_registered = time.time()
        async with h.http.post(f"{base}/v1/jobs", json=body, headers=headers) as resp:
            job: dict[str, Any] = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"tenant B's registration answered {resp.status}: {job}")

        async def b_completed() -> bool:
            return any(row[2] == job["id"] for row in await peers.received(h.http, receiver, "c"))

        done = await h.wait_until(b_completed, 120, 0.2)
        arrived = [row[0] for row in await peers.received(h.http, receiver, "c") if row[2] == job["id"]]
        info = (await peers.sim_polls(h.http, sim, [op["id"]]))["ops"][op["id"]]
        a_polls = await peers.sim_total(h.http, sim) - len(info["times"])
    finally:
        h.stop(worker, api, sim_proc, rec_proc)
    bound = B_INTERVAL + 1.0
    figure = f"9 fairness: tenant B's completion lag while tenant A has {n:,} jobs"
    times = sorted(info["times"])
    gaps = ", ".join(f"{b - a:.1f} s" for a, b in itertools.pairwise(times))
    first = f"first {times[0] - b_registered:.1f} s after it was registered" if times else "never"
    then = f", then after {gaps}" if gaps else ""
    h.note(
        f"fairness: tenant A's jobs registered through the API ({registered:,} answered 201, "
        f"{result['seconds']:.1f} s); {overdue:,} of A's monitors were overdue when B registered; "
        f"the simulator answered {a_polls:,} polls of A's monitors; B's copy lasted {B_DURATION:g} s and was "
        f"polled {len(times)} time(s), {first}{then}"
    )
    if not done or not arrived:
        h.add(figure, "no job.completed within 120 s", f"{bound:.2f} s", None, "<= 1.00", False)
        return
    lag = min(arrived) - (info["created"] + info["duration"])
    h.add(
        figure,
        f"{lag:.2f} s",
        f"{bound:.2f} s (B's interval {B_INTERVAL:g} s + 1 s)",
        lag / bound,
        "<= 1.00",
        lag <= bound and registered == n,
    )


async def overdue_monitors(h: Harness) -> int:
    """Monitors whose due time has passed (Redis clock), i.e. the backlog a new monitor queues behind."""
    seconds, micros = await h.redis.time()
    now_ms = seconds * 1000 + micros // 1000
    lanes = await h.redis.zrange(keys.sched_lanes(keys.MONITORS), 0, -1)  # one due-time set per tenant
    sets = [keys.sched_lane(keys.MONITORS, lane) if lane else keys.MONITORS for lane in lanes]
    return sum([int(await h.redis.zcount(key, "-inf", now_ms)) for key in sets])
