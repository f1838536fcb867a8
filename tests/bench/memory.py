"""Section 4, second part: Redis memory per tracked job, realistic fields, registered through Store.register.

``used_memory`` deltas with the clients' query and reply buffers left out (those follow connections,
not jobs), at several sizes, with a per-key breakdown at the largest.
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
    # (label, hash-max-listpack-value to set, monitor URL sealed): the first is the row's target; the others inform
    configs: list[tuple[str, str | None, bool]] = [(f"hash-max-listpack-value {original}, as started", None, False)]
    if int(original) < 256:
        configs.append(("hash-max-listpack-value 256", "256", False))
    configs.append((f"hash-max-listpack-value {original}, monitor URL sealed", None, True))
    try:
        for label, value, sealed in configs:
            await h.redis.config_set("hash-max-listpack-value", value or original)
            for count in sizes if not sealed else [max(sizes)]:
                await h.fresh_redis()
                # the connections registration will use are open before the first reading
                await asyncio.gather(*(h.redis.ping() for _ in range(64)))
                await asyncio.sleep(0.2)
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
    for label, value, sealed in configs:
        figures = ", ".join(f"{c // 1000}k {results[label, c]:,.0f}" for c in sizes if (label, c) in results)
        per_job = results[label, max(sizes)]
        if sealed:  # what relay serve stores (it refuses to start without RELAY_ENCRYPTION_KEY): informs, for now
            h.info(
                f"4 Redis memory per tracked job [{label}]", f"{per_job:,.0f} B ({figures})", "1,024 B", per_job / 1024
            )
            continue
        h.add(
            f"4 Redis memory per tracked job [{label}]",
            f"{per_job:,.0f} B ({figures})",
            "1,024 B",
            per_job / 1024,
            "<= 1.00",
            per_job <= 1024 or value is not None,
        )
    h.note(
        "memory: fields as registered: 120-char monitor URL, 33-char callback URL, "
        f"{len(template)}-char driveItemUrl, ~45-byte metadata, no authorization; "
        "the listpack-256 row is informational (CONFIG SET on the embedded server); so is the sealed row: the monitor "
        "URL stored sealed (AES-GCM, 203 characters for 120), as relay serve, which needs RELAY_ENCRYPTION_KEY, stores "
        "it (the other rows store it in clear)"
    )


async def stored_bytes(h: Harness) -> int:
    """used_memory without the clients' query and reply buffers: those follow the connections, not the jobs."""
    info = await h.redis.info("memory")
    return int(info["used_memory"]) - int(info["mem_clients_normal"])


async def memory_breakdown(h: Harness, count: int, delta: int) -> list[str]:
    index = keys.owner_jobs("public")  # the bench registers without API tokens
    ((_, entry),) = await h.redis.xrange(index, count=1)
    jid = [entry["j"]]
    job = await h.store.job(jid[0])
    assert job is not None
    mkey = job.monitor_key
    samples = {
        "job hash relay:job:<id>": keys.job(jid[0]),
        "monitor hash relay:monitor:<key> (with j:<id>)": keys.monitor(mkey),
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
    lines.append(f"{'rest (main dict entries, allocator slack)':44} {delta / count - accounted:6,.0f} B")
    lines.append(f"{'total':44} {delta / count:6,.0f} B")
    return lines
