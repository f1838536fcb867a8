"""``make cluster``: relay on a Redis Cluster through a primary's failover, audited like ``make failover``.

For RELAY_REDIS_MIN_REPLICAS=0 and then =1, on a fresh cluster each time: three primaries with a replica each
(tests/cluster.py's ``LoopbackCluster``, real ``redis-server --cluster-enabled yes`` processes on loopback), a
standalone Redis beside it for arq's queue (RELAY_ARQ_REDIS_URL), ``relay serve`` and two ``relay worker``
processes with ``REDIS_URL=redis+cluster://<every node>``, a few hundred copies on the simulator registered over
ten seconds, the misbehaving receiver of ``make chaos`` (500s, 429s, answers too late). Midway through the
registrations the replica of the primary serving the most buckets is stopped for a second (SIGSTOP: its primary
keeps acknowledging writes the replica does not take in), then that primary is SIGKILLed and the replica continued;
the cluster promotes it (cluster-node-timeout 1 s) and the old primary is restarted, rejoining as its replica.

Then the audit of ``make failover`` (every event in Redis, read through relay's Store, against what the receiver got)
and its table, and the API's answers checked against the receiver: each job read back (``GET /v1/jobs/{id}``: there,
and ended as its terminal event said) and the listing paged through (``GET /v1/jobs``: every job once, newest
first). It exits non-zero when the run with RELAY_REDIS_MIN_REPLICAS=1 lost anything, answered wrong, delivered out of
order, or saw a worker die.

``--reshard`` (``make cluster-reshard``): one run instead (RELAY_REDIS_MIN_REPLICAS=1 unless ``--min-replicas``), no
failover: while the jobs run, a third of the slots move with ``redis-cli --cluster reshard`` (each primary hands a
third of its slots to the next); lost 0 and wrong answers 0, or it exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from relay.core.schema import EventType, JobStatus
from relay.store import keys
from relay.store.embedded import EmbeddedRedis
from tests.cluster import LoopbackCluster, Node, slot_of
from tests.failover import KILL_AT, REGISTER_OVER, RESTART_AFTER, STALL, Run, Timeline, settle_and_audit
from tests.faults import Receiver, Workers, fault_env, register, start_api, start_peers, surviving, wait_ready
from tests.helpers import free_port

#: seconds into the registrations at which each of the three slot moves of --reshard starts
RESHARD_AT = (3.0, 5.5, 8.0)


def cluster_url(cluster: LoopbackCluster) -> str:
    """relay's URL for the cluster: every node a startup node."""
    return f"redis+cluster://{cluster.hosts()}"


def bucket_slots() -> list[int]:
    """The slot of each bucket's anchor key (relay.store.keys' cluster keyspace)."""
    space = keys.Keyspace.cluster()
    return [slot_of(space.anchor(bucket)) for bucket in range(space.buckets)]


def busiest_primary(cluster: LoopbackCluster) -> tuple[Node, int]:
    """The primary serving the most buckets (ties: the one holding the most keys), and how many it serves."""
    served: Counter[int] = Counter(cluster.owner(slot).port for slot in bucket_slots())
    primaries = cluster.primary_nodes()

    def weight(node: Node) -> tuple[int, int]:
        with cluster.admin(node) as admin:
            size = int(admin.dbsize())
        return served[node.port], size

    busiest = max(primaries, key=weight)
    return busiest, served[busiest.port]


def replica_of(cluster: LoopbackCluster, primary: Node) -> Node:
    """The (first) replica the cluster lists for ``primary``."""
    for _, ports in cluster.slot_map():
        if ports[0] == primary.port and len(ports) > 1:
            return cluster.node_at(ports[1])
    raise RuntimeError(f"primary {primary.port} has no replica")


def signal_node(node: Node, sig: signal.Signals) -> None:
    assert node.process is not None
    node.process.send_signal(sig)


def repl_offset(cluster: LoopbackCluster, node: Node, field: str = "master_repl_offset") -> int:
    with cluster.admin(node) as admin:
        return int(admin.info("replication").get(field, 0))


async def fail_over(cluster: LoopbackCluster) -> tuple[float, float, list[str]]:
    """The busiest primary's replica cut off for STALL s, the primary SIGKILLed, the replica continued and promoted,
    the old primary restarted RESTART_AFTER s later: (the kill's time, seconds to promotion, lines for the table).

    Cut off: the replica is stopped (SIGSTOP) and the primary drops its connection (CLIENT KILL TYPE replica), so
    that the replica cannot reconnect while the primary goes on acknowledging writes: on loopback a stopped replica
    alone would still read everything from its socket once continued (a killed process' socket buffers still
    arrive), and nothing would be lost at any setting."""
    primary, buckets = await asyncio.to_thread(busiest_primary, cluster)
    replica = await asyncio.to_thread(replica_of, cluster, primary)
    with cluster.admin(primary) as admin:
        held = int(admin.dbsize())
    signal_node(replica, signal.SIGSTOP)
    try:
        with cluster.admin(primary) as admin:
            admin.execute_command("CLIENT", "KILL", "TYPE", "replica")
        await asyncio.sleep(STALL)
        sent = await asyncio.to_thread(repl_offset, cluster, primary)
        await asyncio.to_thread(cluster.kill, primary)
        killed = time.monotonic()
    finally:
        signal_node(replica, signal.SIGCONT)
    print(f"  primary {primary.port} ({buckets} buckets, {held:,} keys) SIGKILLed, its replica {replica.port} cut "
          f"off for {STALL:.0f} s before", flush=True)  # fmt: skip
    promoted = await asyncio.to_thread(cluster.wait_promoted, primary)
    print(f"  the cluster promoted the replica after {promoted:.1f} s", flush=True)
    # a promoted replica's second_repl_offset is one past the last byte it had from its old primary
    got = await asyncio.to_thread(repl_offset, cluster, replica, "second_repl_offset")
    await asyncio.sleep(RESTART_AFTER)
    await asyncio.to_thread(cluster.restart, primary)
    print("  the old primary restarted, a replica now", flush=True)
    return (
        killed,
        promoted,
        [
            f"{'killed primary: buckets, keys':40} {buckets} of {len(bucket_slots())}, {held:,}",
            f"{'bytes the replica never got':40} {max(0, sent - (got - 1)):,}",
        ],
    )


async def move_slots(cluster: LoopbackCluster, source: Node, target: Node, slots: int, tries: int = 5) -> float:
    """``redis-cli --cluster reshard`` once every node agrees on the slot map (it refuses to start otherwise: right
    after a move the new owner's epoch takes a moment to reach every node); the seconds the move took."""
    for attempt in range(tries):
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(cluster.ready):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the nodes did not agree on the slot map (logs in {cluster.workdir})")
            await asyncio.sleep(0.1)
        try:
            return await asyncio.to_thread(cluster.reshard_cli, source, target, slots)
        except RuntimeError as exc:
            if "agree" not in str(exc) or attempt == tries - 1:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def reshard(cluster: LoopbackCluster, began: float) -> list[str]:
    """A third of the slots moved with ``redis-cli --cluster reshard`` while jobs run: each primary hands a third
    of its slots to the next, at RESHARD_AT seconds after ``began``; what moved (slots, and the buckets of relay's
    keys among them: a slot moved twice may come back home), and how long it took."""

    def owners() -> list[int]:
        return [cluster.owner(slot).port for slot in bucket_slots()]

    primaries = await asyncio.to_thread(cluster.primary_nodes)
    counts = {node.port: 0 for node in primaries}
    for slots, ports in await asyncio.to_thread(cluster.slot_map):
        counts[ports[0]] += len(slots)
    first = before = await asyncio.to_thread(owners)
    moved, took, bucket_moves = 0, 0.0, 0
    touched: set[int] = set()
    for i, (source, at) in enumerate(zip(primaries, RESHARD_AT, strict=True)):
        await asyncio.sleep(max(0.0, began + at - time.monotonic()))
        target = primaries[(i + 1) % len(primaries)]
        share = counts[source.port] // 3
        seconds = await move_slots(cluster, source, target, share)
        after = await asyncio.to_thread(owners)
        changed = {b for b, (x, y) in enumerate(zip(before, after, strict=True)) if x != y}
        bucket_moves += len(changed)
        touched |= changed
        before = after
        moved += share
        took += seconds
        print(f"  redis-cli --cluster reshard: {share:,} slots {source.port} -> {target.port} in {seconds:.1f} s "
              f"({len(changed)} buckets)", flush=True)  # fmt: skip
    home = sum(1 for b in touched if first[b] == before[b])
    return [
        f"{'reshard: slots moved':40} {moved:,} of {REDIS_CLUSTER_HASH_SLOTS:,}",
        f"{'reshard: buckets moved (moves)':40} {len(touched)} of {len(first)} ({bucket_moves}; {home} back home)",
        f"{'reshard: redis-cli time (3 moves)':40} {took:.1f} s",
    ]


async def check_answers(
    api: str, job_ids: list[str], known: set[str], rec: Receiver, refused: int
) -> tuple[int, list[str]]:
    """The API's answers against the receiver: every job still known read back (``GET /v1/jobs/{id}``) ended as its
    terminal event said, and the listing (``GET /v1/jobs``, 100 a page) naming each once, and no other job than
    those registered (or, at most ``refused``, registrations answered other than 201). The wrong answers, and a
    line per kind."""
    ended = {EventType.COMPLETED.value: JobStatus.COMPLETED.value, EventType.FAILED.value: JobStatus.FAILED.value}
    wrong: Counter[str] = Counter()
    async with aiohttp.ClientSession() as session:
        for job_id in job_ids:
            async with session.get(f"{api}/v1/jobs/{job_id}") as resp:
                if resp.status != 200:
                    what = "not found" if resp.status == 404 else str(resp.status)
                    wrong[f"job read: {what}"] += job_id in known
                    continue
                view = await resp.json()
            terminal = [kind for _, kind, _ in rec.order.get(job_id, []) if kind in ended]
            if terminal and view["status"] != ended[terminal[-1]]:
                wrong["job read: status differs from its terminal event"] += 1
        listed: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(1000):
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            async with session.get(f"{api}/v1/jobs", params=params) as resp:
                if resp.status != 200:
                    wrong[f"listing: {resp.status}"] += 1
                    break
                page = await resp.json()
            listed += page["jobs"]
            cursor = page.get("nextCursor")
            if not cursor:
                break
    ids = [view["id"] for view in listed]
    wrong["listing: a job twice"] = len(ids) - len(set(ids))
    wrong["listing: a known job missing"] = len(known - set(ids))
    # a registration answered other than 201 (503: its write not confirmed by replicas in time) may still
    # have been made, as on one Redis: listed, it is no wrong answer; beyond the 503s, it is one
    unconfirmed = len(set(ids) - set(job_ids))
    wrong["listing: a job never registered"] = max(0, unconfirmed - refused)
    # the listing is newest first by its index (the owner's stream, appended when a registration is admitted); on a
    # cluster the job's createdDateTime is written after, in its bucket: by how much the two orders differ
    created = [datetime.fromisoformat(view["createdDateTime"].replace("Z", "+00:00")) for view in listed]
    inversions = [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(created) if a < b]
    lines = [f"{'wrong answers (API vs receiver)':40} {sum(wrong.values())}"]
    lines += [f"  {kind:38} {count}" for kind, count in wrong.items() if count]
    lines.append(f"{'listing: jobs listed / known':40} {len(set(ids))} / {len(known)}")
    if unconfirmed:
        lines.append(f"{'listing: not answered 201, made all same':40} {unconfirmed}")
    lines.append(
        f"{'listing: createdDateTime newer than above':40} {len(inversions)}"
        + (f" (by at most {max(inversions):,.0f} ms)" if inversions else "")
    )
    return sum(wrong.values()), lines


async def run(replicas: int, jobs: int, limit: float, *, resharding: bool) -> Run:
    result = Run(replicas)
    started = time.monotonic()
    kind = "reshard" if resharding else "failover"
    logdir = Path(tempfile.mkdtemp(prefix=f"relay-cluster-{kind}-{replicas}-"))
    cluster = LoopbackCluster(primaries=3, replicas=1, node_timeout_ms=1000)
    arq_redis = EmbeddedRedis()
    polls: list[tuple[float, int]] = []
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(cluster.cleanup)
        brought_up = await asyncio.to_thread(cluster.start)
        arq_redis.start()
        stack.callback(arq_redis.cleanup)
        sim, rec, hook = await start_peers(stack)
        port = free_port()
        env = fault_env(
            cluster_url(cluster),
            port,
            RELAY_ARQ_REDIS_URL=arq_redis.url,
            RELAY_REDIS_MIN_REPLICAS=str(replicas),
            RELAY_REDIS_WAIT_TIMEOUT="1",
        )
        api_proc = start_api(env, logdir)
        stack.callback(_stop, api_proc)
        workers = Workers(2, env, logdir)
        stack.callback(workers.stop_all)
        api = f"http://127.0.0.1:{port}"
        await wait_ready(api)
        workers.start_all()
        print(f"cluster {kind}, RELAY_REDIS_MIN_REPLICAS={replicas}: {jobs} jobs, 2 workers, 3 primaries + 3 "
              f"replicas up in {brought_up:.1f} s; logs in {logdir}", flush=True)  # fmt: skip

        async def sample() -> None:
            while True:
                polls.append((time.monotonic(), sim.total_polls))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        stack.push_async_callback(_cancel, sampler)
        created: list[float] = []
        answers: Counter[int] = Counter()
        extra: list[str] = []
        killed, promoted = 0.0, None
        async with aiohttp.ClientSession() as session:
            began = time.monotonic()
            registering = asyncio.create_task(
                register(session, api, sim, hook, jobs, parallel=16, spread=REGISTER_OVER, longest=30,
                         created=created, answers=answers)
            )  # fmt: skip
            stack.push_async_callback(_cancel, registering)  # if the fault fails
            if resharding:
                extra += await reshard(cluster, began)
            else:
                await asyncio.sleep(KILL_AT)
                killed, promoted, lines = await fail_over(cluster)
                extra += lines
            job_ids = await registering
        print(f"  registered {len(job_ids)} jobs in {time.monotonic() - started:.0f} s", flush=True)
        refused = {status: n for status, n in sorted(answers.items()) if status != 201}
        extra.append(f"{'registration answers other than 201':40} {refused or 'none'}")
        timeline = Timeline(started, killed, promoted, created, polls)
        await settle_and_audit(
            result, env, job_ids, rec, workers, timeline, limit, "cluster promoted", extra, print_table=False
        )
        known = await surviving(env, job_ids)
        wrong, lines = await check_answers(api, job_ids, known, rec, sum(refused.values()))
        # a registration answered 500 (or any 5xx but 503's "try again"): an error of relay's, never an answer
        broken = sum(n for status, n in answers.items() if status >= 500 and status != 503)
        if broken:
            wrong += broken
            lines[0] = f"{'wrong answers (API vs receiver)':40} {wrong}"
            lines.insert(1, f"  {'registration: 5xx other than 503':38} {broken}")
        result.lines += lines
        result.wrong = wrong
        result.ok = result.ok and wrong == 0
        result.print()
    return result


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _stop(proc: Any) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except Exception:
            proc.kill()


async def main(jobs: int, limit: float, resharding: bool, min_replicas: int | None) -> int:
    settings = [min_replicas] if min_replicas is not None else [1] if resharding else [0, 1]
    runs = [await run(replicas, jobs, limit, resharding=resharding) for replicas in settings]
    kind = "cluster reshard" if resharding else "cluster failover"
    for r in runs:
        print(f"{kind}, RELAY_REDIS_MIN_REPLICAS={r.replicas}: events lost {r.lost}, wrong answers {r.wrong}")
    strict = runs[-1]
    must = "lose nothing and answer right" + ("" if resharding else " with RELAY_REDIS_MIN_REPLICAS=1")
    print(f"{kind}: PASS" if strict.ok else f"{kind}: FAIL (it must {must})")
    return 0 if strict.ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--limit", type=float, default=240, help="seconds before giving up, per run")
    parser.add_argument("--reshard", action="store_true", help="move a third of the slots instead of a failover")
    parser.add_argument(
        "--min-replicas",
        type=int,
        default=None,
        help="one run at this RELAY_REDIS_MIN_REPLICAS (default: 0 and 1; 1 with --reshard)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the exit stack stops the cluster and the processes
    sys.exit(asyncio.run(main(args.jobs, args.limit, args.reshard, args.min_replicas)))
