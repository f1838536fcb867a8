"""Section 11: the same latency-bound load on a Redis Cluster of 1 shard and of 3 (issue 30).

Each run starts a loopback cluster (tests/cluster.py, no replicas) of ``shards`` primaries (and, for reference, one
plain Redis), registers the same
copies on it (``--shard-jobs``, 10-30 s each, the simulator answering every poll after 100 ms), and runs two
``relay worker`` processes with ``REDIS_URL=redis+cluster://...`` (arq's queue on the bench's standalone Redis,
RELAY_ARQ_REDIS_URL), polls due every 2 s, 40 in flight per worker: at most ~800 polls a second, above the load's
~500, so the load, not relay, sets the pace. Over a window it measures the polls a second, and each node's Redis CPU
(INFO's ``used_cpu_sys`` + ``used_cpu_user``) per poll; then each copy's lag (its completion at the simulator ->
job.completed at the receiver), p50 and p99.

What it shows: capacity per shard. At one Redis core per shard, a cluster's ceiling is where its busiest shard is
full: 1e6 / (that shard's µs per poll of the cluster's polls). On 2 cores, shared by the workers, the simulator and
every node, the machine is full long before any shard is: **2 cores cannot show CPU-bound scaling**; the rows show
that the work splits across shards and what each shard's core would sustain, not a measured 3x.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from relay.config.settings import Settings
from relay.store import keys
from relay.store.embedded import EmbeddedRedis
from relay.store.jobs import monitor_key
from relay.store.open import open_store
from tests.bench import peers
from tests.bench.harness import Harness
from tests.bench.measure import Meter, pct
from tests.cluster import LoopbackCluster

__all__ = ["run"]

WINDOW, WARM = 10.0, 4.0
INTERVAL = 2.0
CONCURRENCY = 40
LATENCY = 0.1
NOTE = "2 cores cannot show CPU-bound scaling"


@dataclass
class Shards:
    shards: int
    polls_per_s: float
    redis_us: list[float]  # per node: its CPU per poll of the whole cluster
    lag_p50: float
    lag_p99: float
    completed: int
    jobs: int
    workers_us: float

    @property
    def ceiling(self) -> float:
        """Polls a second when the busiest shard has one core full."""
        busiest = max(self.redis_us)
        return 1e6 / busiest if busiest > 0 else 0.0


def redis_cpu(address: tuple[str, int]) -> float:
    """Seconds of CPU a Redis has used (INFO cpu: used_cpu_sys + used_cpu_user)."""
    with redis.Redis(*address, socket_timeout=5, decode_responses=True) as admin:
        info = admin.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


@contextlib.contextmanager
def started(shards: int) -> Iterator[tuple[str, list[tuple[str, int]], bool]]:
    """A loopback cluster of ``shards`` primaries, or (0) one standalone Redis: (its URL, its primaries, clustered)."""
    if shards == 0:
        server = EmbeddedRedis()
        try:
            server.start()
            yield server.url, [("127.0.0.1", server.port)], False
        finally:
            server.cleanup()
        return
    cluster = LoopbackCluster(primaries=shards, replicas=0)
    try:
        cluster.start()
        yield f"redis+cluster://{cluster.hosts()}", [n.address for n in cluster.primary_nodes()], True
    finally:
        cluster.cleanup()


async def measure(h: Harness, sim_proc: subprocess.Popen[bytes], sim: str, receiver: str, shards: int) -> Shards:
    n: int = h.args.shard_jobs
    rng = random.Random(11)
    workers: list[subprocess.Popen[bytes]] = []
    with started(shards) as (url, nodes, clustered):
        await h.fresh_redis()  # arq's queue and the workers' health keys
        await peers.reset_receiver(h.http, receiver)
        env = h.relay_env(
            REDIS_URL=url,
            RELAY_ARQ_REDIS_URL=h.redis_server.url,
            RELAY_POLL_CONCURRENCY=CONCURRENCY,
            RELAY_POLL_INITIAL_INTERVAL=INTERVAL,
            RELAY_POLL_MAX_INTERVAL=INTERVAL,
        )
        store = open_store(Settings.from_env(env))
        space = keys.Keyspace.cluster() if clustered else keys.SINGLE
        try:
            knobs = [{"duration": rng.uniform(10, 30), "latency": LATENCY} for _ in range(n)]
            ops = await peers.sim_create(h.http, sim, knobs, record=True)
            job_of_op: dict[str, str] = {}
            specs = []
            for op in ops:
                jid = space.new_job_id(monitor_key(op["monitorUrl"]))
                job_of_op[op["id"]] = jid
                fields = peers.sim_job_fields(h.vault, sim, receiver)
                specs.append((jid, fields, op["monitorUrl"]))
            await peers.register(store, specs)
        finally:
            await store.redis.aclose()
        registered = time.monotonic()
        try:
            workers = [await h.start_worker(env) for _ in range(2)]
            await asyncio.sleep(max(0.0, registered + WARM - time.monotonic()))
            meter = Meter({"simulator": sim_proc.pid, **{f"worker{i + 1}": w.pid for i, w in enumerate(workers)}})
            a, cpu0, p0 = meter.sample(), [redis_cpu(x) for x in nodes], await peers.sim_total(h.http, sim)
            await asyncio.sleep(WINDOW)
            b, cpu1, p1 = meter.sample(), [redis_cpu(x) for x in nodes], await peers.sim_total(h.http, sim)
            window = Meter.between(a, b)
            polls = p1 - p0

            async def all_ended() -> bool:
                return len(await peers.received(h.http, receiver, "cf")) >= n

            await h.wait_until(all_ended, 30 + 60, 1.0)
            ended = {row[2]: row[0] for row in await peers.received(h.http, receiver, "cf")}
            infos = (await peers.sim_polls(h.http, sim, list(job_of_op)))["ops"]
            lags = [
                ended[job_of_op[op_id]] - (info["created"] + info["duration"])
                for op_id, info in infos.items()
                if job_of_op.get(op_id) in ended
            ]
        finally:
            h.stop(*workers)
    workers_cpu = sum(cpu for name, cpu in window.cpu.items() if name.startswith("worker"))
    result = Shards(
        shards=shards,
        polls_per_s=polls / window.seconds if window.seconds else 0.0,
        redis_us=[1e6 * (after - before) / polls if polls else 0.0 for before, after in zip(cpu0, cpu1, strict=True)],
        lag_p50=pct(lags, 0.5) if lags else float("nan"),
        lag_p99=pct(lags, 0.99) if lags else float("nan"),
        completed=len(lags),
        jobs=n,
        workers_us=1e6 * workers_cpu / polls if polls else 0.0,
    )
    per_node = " / ".join(f"{us:,.0f}" for us in result.redis_us)
    what = f"{shards} shard(s)" if shards else "one plain Redis"
    h.say(
        f"{what}: {result.polls_per_s:,.0f} polls/s; lag p50 {result.lag_p50:.2f} s, p99 "
        f"{result.lag_p99:.2f} s ({result.completed}/{n} ended); Redis µs per poll per shard {per_node}; workers "
        f"{result.workers_us:,.0f} µs per poll; machine {window.cores_busy:.2f} cores busy"
    )
    return result


async def run(h: Harness) -> None:
    sim_proc, sim = h.spawn_server("sim")
    rec_proc, receiver = h.spawn_server("receiver")
    try:
        alone = await measure(h, sim_proc, sim, receiver, 0)
        one = await measure(h, sim_proc, sim, receiver, 1)
        three = await measure(h, sim_proc, sim, receiver, 3)
    finally:
        h.stop(sim_proc, rec_proc)
    load = f"{h.args.shard_jobs:,} copies, polls every {INTERVAL:.0f} s answered in {LATENCY * 1000:.0f} ms, 2 workers"
    h.info(
        f"11 cluster, latency-bound ({load}): polls/s, 3 shards vs 1 (one plain Redis: {alone.polls_per_s:,.0f}/s)",
        f"{three.polls_per_s:,.0f}/s",
        f"{one.polls_per_s:,.0f}/s",
        three.polls_per_s / one.polls_per_s if one.polls_per_s else None,
    )
    h.info(
        f"11 cluster: completion lag p50 / p99, 3 shards vs 1 (one plain Redis: {alone.lag_p50:.2f} / "
        f"{alone.lag_p99:.2f} s)",
        f"{three.lag_p50:.2f} / {three.lag_p99:.2f} s",
        f"{one.lag_p50:.2f} / {one.lag_p99:.2f} s",
        three.lag_p99 / one.lag_p99 if one.lag_p99 > 0 else None,
    )
    h.info(
        "11 cluster: Redis CPU per poll, per shard (µs of each node per poll of the cluster), 3 shards vs 1",
        " / ".join(f"{us:,.0f}" for us in three.redis_us) + f" (sum {sum(three.redis_us):,.0f})",
        " / ".join(f"{us:,.0f}" for us in one.redis_us),
        sum(three.redis_us) / sum(one.redis_us) if sum(one.redis_us) else None,
    )
    h.info(
        "11 cluster: Redis CPU per poll, a cluster of 1 shard vs one plain Redis (µs)",
        f"{sum(one.redis_us):,.0f}",
        f"{sum(alone.redis_us):,.0f}",
        sum(one.redis_us) / sum(alone.redis_us) if sum(alone.redis_us) else None,
    )
    h.info(
        f"11 cluster ceiling: polls/s at one core per shard, busiest shard full ({NOTE})",
        f"{three.ceiling:,.0f}/s (3 shards)",
        f"{one.ceiling:,.0f}/s (1 shard)",
        three.ceiling / one.ceiling if one.ceiling else None,
    )
    h.note(
        f"11 cluster: {NOTE}: the workers, the simulator and every Redis node share them; the ceiling row is each "
        "shard's CPU per poll measured at a latency-bound load (fixed costs such as the claims' sweeps of every "
        "bucket included, so it is low), turned into what a core per shard would sustain"
    )
    for r in (alone, one, three):
        if r.completed < r.jobs:
            h.note(f"11 cluster, {r.shards} shard(s): {r.jobs - r.completed} of {r.jobs} copies had no terminal event")
