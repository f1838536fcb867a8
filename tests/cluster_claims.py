"""What a claim costs on a Redis Cluster with 128 buckets (docs/cluster-design.md, "Claiming across buckets"): the
round trips (pipelines; each one send per node) and the Redis commands of claims, idle and busy, on a 3-primary
loopback cluster. ``python -m tests.cluster_claims`` prints the table for the machine it runs on."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import time
from pathlib import Path
from typing import Any

from relay.core.schema import Job
from relay.store.jobs import Store
from tests.cluster import LoopbackCluster


def _machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), "?")
    return f"{model}, {os.cpu_count()} cores, {platform.python_version()}"


async def _commands(cluster: LoopbackCluster) -> dict[str, int]:
    total: dict[str, int] = {}
    for node in cluster.primary_nodes():
        admin = cluster.admin(node)
        for name, stats in admin.info("commandstats").items():
            key = name.removeprefix("cmdstat_")
            total[key] = total.get(key, 0) + int(stats["calls"])
        admin.close()
    return total


async def _measure(cluster: LoopbackCluster, store: Store, rounds: int, pause: float) -> dict[str, Any]:
    monitors = store.monitors
    before, trips, claimed = await _commands(cluster), monitors.round_trips, 0
    start = time.monotonic()
    for _ in range(rounds):
        batch = await monitors.claim_batch(100, 60)
        claimed += len(batch.claims)
        await asyncio.sleep(pause)
    seconds = time.monotonic() - start
    after = await _commands(cluster)
    used = {k: after.get(k, 0) - before.get(k, 0) for k in ("evalsha", "zrange")}
    trips = monitors.round_trips - trips
    return {"claims": rounds, "claimed": claimed, "round trips": trips, "seconds": seconds, **used}


async def run(monitors: int) -> None:
    with LoopbackCluster(primaries=3) as cluster:
        client = cluster.client()
        store = Store(client, retention=600, job_timeout=600)
        await store.monitors.claim_batch(1, 60)  # scripts loaded, the view swept once
        idle = await _measure(cluster, store, 20, 0.25)  # an idle loop wakes every few hundred ms at most
        fields = Job(owner="alpha", callback_url="http://127.0.0.1:1029/h")
        for start in range(0, monitors, 200):
            await asyncio.gather(
                *(
                    store.register(secrets.token_hex(16), fields, f"http://127.0.0.1:1029/m/{n}")
                    for n in range(start, min(monitors, start + 200))
                )
            )
        store.monitors.woken()
        busy = await _measure(cluster, store, monitors // 100, 0.0)
        await client.aclose()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {_machine()}; load average {load}; 3 primaries, 128 buckets")
    print(f"{'':28} {'claims':>7} {'claimed':>8} {'round trips':>12} {'EVALSHA':>8} {'ZRANGE':>7} {'seconds':>8}")
    for name, row in (("idle (every 0.25 s)", idle), (f"busy ({monitors} monitors due)", busy)):
        print(
            f"{name:28} {row['claims']:>7} {row['claimed']:>8} {row['round trips']:>12} {row['evalsha']:>8} "
            f"{row['zrange']:>7} {row['seconds']:>8.2f}"
        )
    print("a round trip is one pipeline: one send to each node it names (here up to 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--monitors", type=int, default=2000)
    asyncio.run(run(parser.parse_args().monitors))


if __name__ == "__main__":
    main()
