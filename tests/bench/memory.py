"""Section 4, second part: Redis memory per tracked job, realistic fields, registered through Store.register.

``used_memory`` deltas read with every client connection closed (client buffers follow connections, not jobs),
at several sizes, with a per-key breakdown at the largest.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from relay.store import keys
from tests.bench import peers
from tests.bench.harness import Harness

__all__ = ["memory_per_job"]


async def memory_per_job(h: Harness) -> None:
    """used_memory delta per tracked job (client buffers left out), realistic fields, through Store.register."""
    sizes = h.args.memory_sizes
    callback = "http://localhost:3000/hooks/relay"
    template = f"https://graph.microsoft.com/v1.0/drives/{peers.DRIVE_ID}/items/{{resourceId}}"

    def monitor_url(i: int) -> str:  # 120 characters, unique per job
        url = f"https://api.onedrive.com/monitor/{uuid.UUID(int=i).hex.upper()}?m=1&t="
        return url + "q" * (120 - len(url))

    results: dict[tuple[str, int], float] = {}
    breakdowns: dict[str, list[str]] = {}
    original = (await h.redis.config_get("hash-max-listpack-value"))["hash-max-listpack-value"]
    # (label, hash-max-listpack-value to set, monitor URL sealed, every size): the first is the row's target, the
    # monitor URL sealed as `relay serve` stores it (it refuses to start without RELAY_ENCRYPTION_KEY); the others
    # inform: the URL in clear (what no `relay serve` stores), and Redis' own default of 64 (relay's embedded Redis
    # and deploy/k8s set 1024), under which every hash holding a value over 64 bytes is a hashtable
    configs: list[tuple[str, str | None, bool, bool]] = [
        (f"hash-max-listpack-value {original}, monitor URL sealed, as relay serve stores it", None, True, True),
        (f"hash-max-listpack-value {original}, monitor URL in clear", None, False, True),
    ]
    if int(original) < 256:
        configs.append(("hash-max-listpack-value 256, monitor URL in clear", "256", False, False))
    if int(original) != 64:
        configs.append(("hash-max-listpack-value 64 (Redis' default), monitor URL sealed", "64", True, False))
    try:
        for label, value, sealed, every_size in configs:
            await h.redis.config_set("hash-max-listpack-value", value or original)
            for count in sizes if every_size else [max(sizes)]:
                await h.fresh_redis()
                before = await stored_bytes(h)
                specs = (
                    (
                        uuid.uuid4().hex,
                        peers.job_fields(
                            h.vault,
                            callback,
                            "api.onedrive.com",
                            drive_item_url=template,
                            metadata={"requestId": f"r-{i:08d}", "tenant": "contoso"},
                        ),
                        monitor_url(i),
                    )
                    for i in range(count)
                )
                t = time.monotonic()
                await peers.register(h.store, specs, parallel=64, seal=h.vault if sealed else None)
                after = await stored_bytes(h)
                results[label, count] = (after - before) / count
                h.say(
                    f"memory [{label}] {count:,} jobs: {(after - before) / count:,.0f} B/job "
                    f"(registered in {time.monotonic() - t:.1f} s)"
                )
                if count == max(sizes):
                    breakdowns[label] = await memory_breakdown(h, count, after - before)
    finally:
        await h.redis.config_set("hash-max-listpack-value", original)
        await h.fresh_redis()
    for label, lines in breakdowns.items():
        print(f"    breakdown at {max(sizes):,} jobs [{label}]:")
        for line in lines:
            print(f"      {line}")
    for index, (label, _, _, _) in enumerate(configs):
        figures = ", ".join(f"{c // 1000}k {results[label, c]:,.0f}" for c in sizes if (label, c) in results)
        per_job = results[label, max(sizes)]
        figure = f"4 Redis memory per tracked job [{label}]"
        if index:
            h.info(figure, f"{per_job:,.0f} B ({figures})", "1,024 B", per_job / 1024)
        else:
            h.add(figure, f"{per_job:,.0f} B ({figures})", "1,024 B", per_job / 1024, "<= 1.00", per_job <= 1024)
    sealed_chars = len(h.vault.seal(monitor_url(0)))
    h.note(
        "memory: fields as registered: 120-char monitor URL, 33-char callback URL, "
        f"{len(template)}-char driveItemUrl, ~45-byte metadata, no authorization; the target row stores the monitor "
        f"URL sealed (AES-256-GCM, {sealed_chars} characters for 120) as relay serve, which needs "
        "RELAY_ENCRYPTION_KEY, stores it; the other rows inform (the URL in clear; other hash-max-listpack-value "
        "settings, CONFIG SET on the embedded server)"
    )


async def stored_bytes(h: Harness) -> int:
    """used_memory with no client but the one asking (and without its buffers): a client's buffers follow the
    connection, not the jobs, and ``mem_clients_normal`` does not count them all (Redis 7.0: 64 connections just
    used held ~2.4 MB of ``used_memory`` and reported ~0.45 MB; shrunk while 100k jobs were registered, they took
    10-20 B a job off the figure, by how busy the connections had been before). Every connection is closed first."""
    await h.redis.connection_pool.disconnect()
    await asyncio.sleep(0.2)  # Redis frees a closed connection's client when its event loop sees the close
    info = await h.redis.info("memory")
    return int(info["used_memory"]) - int(info["mem_clients_normal"])


async def memory_breakdown(h: Harness, count: int, delta: int) -> list[str]:
    index = keys.owner_jobs("public")  # the bench registers without API tokens
    ((_, entry),) = await h.redis.xrange(index, count=1)
    jid = [entry["j"]]
    job = await h.store.job(jid[0])
    assert job is not None
    mkey = job.monitor_key
    url: str | None = await h.redis.hget(keys.monitor(mkey), "url")  # type: ignore[misc]  # redis-py types sync and async
    url_chars = len(url or "")
    samples = {
        "job hash relay:job:<id>": keys.job(jid[0]),
        f"monitor hash relay:monitor:<key> (url {url_chars} ch, j:<id>)": keys.monitor(mkey),
    }
    lines = []
    accounted = 0.0
    for label, key in samples.items():
        usage = await h.redis.memory_usage(key, samples=0) or 0
        encoding = await h.redis.object("encoding", key)
        accounted += usage
        lines.append(f"{label:44} {usage:6,} B  ({encoding})")
    for label, key in (
        ("owner's jobs index stream (per entry)", index),
        ("monitors zset (per member)", keys.MONITORS),
    ):
        usage = (await h.redis.memory_usage(key, samples=0) or 0) / count
        accounted += usage
        lines.append(f"{label:44} {usage:6,.0f} B  ({await h.redis.object('encoding', key)})")
    # the keyspace's bucket array (MEMORY USAGE counts each key's dictEntry and value object, not the buckets):
    # MEMORY STATS' overhead.hashtable.main is entries x (dictEntry 24 + robj 16) + buckets x 8
    db = (await h.redis.memory_stats()).get("db.0", {})
    buckets = (int(db.get("overhead.hashtable.main", 0)) - await h.redis.dbsize() * 40) / count
    accounted += buckets
    lines.append(f"{'keyspace buckets (8 B each, a power of 2)':44} {buckets:6,.0f} B")
    lines.append(f"{'rest (dictEntry 24 B in 32 B allocations...)':44} {delta / count - accounted:6,.0f} B")
    lines.append(f"{'total':44} {delta / count:6,.0f} B")
    return lines
