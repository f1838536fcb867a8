"""relay on a Redis Cluster, the basics end to end (issue 30): ``relay serve`` and ``relay worker`` with
``REDIS_URL=redis+cluster://<every node>`` on the 3-primary loopback cluster of the ``redis_cluster`` fixture (arq's
queue on a standalone Redis beside it, RELAY_ARQ_REDIS_URL): copies registered on several monitors (several buckets,
so several shards) and two jobs sharing one monitor, polled, their events delivered signed and in order, each job
read back and the listing paged through. The failover and resharding runs are ``make cluster`` and
``make cluster-reshard`` (tests/cluster_failover.py)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from relay.core.schema import EventType
from relay.simulator import Simulator
from relay.store import keys
from relay.store.embedded import EmbeddedRedis
from relay.store.jobs import monitor_key
from tests.cluster import LoopbackCluster, slot_of
from tests.cluster_failover import cluster_url
from tests.faults import wait_ready
from tests.helpers import Receiver, ensure_stopped, free_port, loopback_env, start_relay

TERMINAL = EventType.terminal_types()


@pytest.fixture
def arq_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis()
    server.start()
    yield server
    server.cleanup()


@contextlib.asynccontextmanager
async def relay_on(cluster: LoopbackCluster, arq: EmbeddedRedis) -> AsyncIterator[str]:
    """``relay serve`` and one ``relay worker`` on the cluster; the API's base URL."""
    port = free_port()
    env = loopback_env(
        cluster_url(cluster),
        RELAY_PORT=str(port),
        RELAY_ARQ_REDIS_URL=arq.url,
        RELAY_POLL_INITIAL_INTERVAL="0.2",
        RELAY_POLL_MAX_INTERVAL="0.5",
    )
    api = start_relay("serve", env)
    worker = start_relay("worker", env)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, timeout=20)
        yield base
        assert worker.poll() is None, f"relay worker exited with {worker.returncode}"
    finally:
        for proc in (api, worker):
            proc.terminate()
        for proc in (api, worker):
            try:
                proc.wait(10)
            finally:
                ensure_stopped(proc)


async def test_register_poll_deliver_and_list_through_a_cluster_url(
    redis_cluster: LoopbackCluster, arq_redis: EmbeddedRedis, simulator: Simulator, receiver: Receiver
) -> None:
    run = uuid.uuid4().hex
    space = keys.Keyspace.cluster()

    def shard_of(op: Any) -> int:
        return redis_cluster.owner(slot_of(space.anchor(space.bucket_of(monitor_key(op.monitor_url))))).port

    ops: dict[int, Any] = {}  # a copy on every shard
    while len(ops) < len(redis_cluster.primary_nodes()):
        op = simulator.create(duration=0.6, completion="303")
        ops.setdefault(shard_of(op), op)
    shared = simulator.create(duration=0.8)
    monitors = [*ops.values(), simulator.create(duration=0.6, outcome="failed"), shared, shared]
    async with relay_on(redis_cluster, arq_redis) as api, aiohttp.ClientSession() as http:
        created: list[dict[str, Any]] = []
        for i, op in enumerate(monitors):
            body = {
                "monitorUrl": op.monitor_url,
                "callbackUrl": receiver.url,
                "driveItemUrl": f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}",
                "authorization": "Bearer sim-token",
                "metadata": {"run": run, "i": str(i)},
            }
            async with http.post(f"{api}/v1/jobs", json=body) as resp:
                assert resp.status == 201, await resp.text()
                created.append(await resp.json())
        ids = [job["id"] for job in created]
        await receiver.wait_for(lambda: all(receiver.terminal(j) is not None for j in ids), timeout=20)

        for job_id, op in zip(ids, monitors, strict=True):
            events = receiver.events(job_id)
            sequences = [e["data"]["sequence"] for e in events]
            assert sequences == sorted(set(sequences)), f"out of order: {sequences}"
            assert [e["type"] in TERMINAL for e in events].count(True) == 1 and events[-1]["type"] in TERMINAL
            expected = "job.failed" if op.options.outcome == "failed" else "job.completed"
            assert events[-1]["type"] == expected
            async with http.get(f"{api}/v1/jobs/{job_id}") as resp:
                assert resp.status == 200
                view = await resp.json()
            assert view["status"] == expected.removeprefix("job.")
        assert receiver.bad_signatures == 0

        listed: list[str] = []
        cursor = ""
        while True:  # two a page: the merge and the cursors across pages
            params = {"limit": "2", "metadata[run]": run, **({"cursor": cursor} if cursor else {})}
            async with http.get(f"{api}/v1/jobs", params=params) as resp:
                assert resp.status == 200, await resp.text()
                page = await resp.json()
            listed += [job["id"] for job in page["jobs"]]
            cursor = page.get("nextCursor") or ""
            if not cursor:
                break
        assert listed == ids[::-1], "the listing: every job once, newest first"

    # each job is kept in its monitor's bucket, on that bucket's shard: every shard holds one
    for job_id, op in zip(ids, monitors, strict=True):
        owner = redis_cluster.owner(slot_of(space.job(job_id)))
        assert owner.port == shard_of(op)
        with redis_cluster.admin(owner) as admin:
            assert admin.exists(space.job(job_id)) == 1
