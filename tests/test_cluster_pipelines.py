"""relay's cluster pipeline (relay/store/cluster_client.py ``_RetryingPipeline``) on the real loopback cluster
(tests/cluster.py): after one node's connection drops mid-pipeline only what that node did not answer is sent again
(a healthy node's scripts run once: an owner's listing has each job once, a claim round claims each member once);
with ``RELAY_REDIS_MIN_REPLICAS`` every node that ran scripts is asked ``WAIT`` after them on the same connection,
and a node whose replicas do not confirm fails its calls with ``NotReplicated``, as a lone script does
(``--slow``: a 3+3 cluster, one replica stopped)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from relay.core.schema import Job
from relay.store.batched import BatchedScript
from relay.store.cluster_client import RelayCluster
from relay.store.connections import redis_client
from relay.store.durable import NotReplicated
from relay.store.jobs import Store
from relay.store.keys import Keyspace
from relay.store.scripts import LuaScript, encode_call, run_many
from tests.cluster import LoopbackCluster
from tests.test_cluster_client import spread_keys

COUNT = LuaScript.from_text("count", "return redis.call('INCR', KEYS[1])")


def drop_connections(cluster: LoopbackCluster, client: RelayCluster, port: int) -> int:
    """Close, from the server's side (``CLIENT KILL``), every connection ``client`` holds to the node at ``port``:
    the client's next send there meets a closed connection. The node's count of connections received so far."""
    node = client.get_node("127.0.0.1", port)
    assert node is not None
    local = [c._writer.get_extra_info("sockname") for c in node._connections if c.is_connected and c._writer]
    assert local, "the client holds no connection to that node yet"
    with cluster.admin(cluster.node_at(port)) as admin:
        for host, local_port in (address[:2] for address in local):
            admin.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{local_port}")
        received: int = admin.info("stats")["total_connections_received"]
    return received


def connections_received(cluster: LoopbackCluster, port: int) -> int:
    with cluster.admin(cluster.node_at(port)) as admin:
        received: int = admin.info("stats")["total_connections_received"]
    return received


@pytest.fixture
async def client(redis_cluster: LoopbackCluster, redis_cluster_url: str) -> AsyncIterator[RelayCluster]:
    admin = redis_cluster.client()
    await admin.flushall()
    await admin.aclose()
    made = redis_client(redis_cluster_url)
    assert isinstance(made, RelayCluster)
    yield made
    await made.aclose()


async def test_a_dropped_node_has_its_commands_sent_again_and_the_others_run_once(
    redis_cluster: LoopbackCluster, client: RelayCluster
) -> None:
    names = spread_keys(redis_cluster)
    runs: list[tuple[str, list[Any]]] = [(name, []) for name in names]
    assert await run_many(client, COUNT, runs) == [1] * len(names)  # a connection to every node
    victim = redis_cluster.owner_of(names[0]).port
    before = drop_connections(redis_cluster, client, victim)
    assert await run_many(client, COUNT, runs) == [2] * len(names)
    assert connections_received(redis_cluster, victim) > before, "the victim's connection failed and was made again"
    assert [int(await client.get(name)) for name in names] == [2] * len(names), "a script ran twice"


async def test_admissions_sent_again_after_a_dropped_node_list_each_job_once(
    redis_cluster: LoopbackCluster, client: RelayCluster
) -> None:
    """admit.lua (a cluster registration's owner part: the owner's listing entry) for owners on every node, one
    pipeline; one node's connection dropped before it: every owner's listing has each of its jobs once."""
    ks = Keyspace.cluster()
    owners: dict[int, str] = {}
    while len(owners) < len(redis_cluster.primary_nodes()):
        owner = f"owner-{uuid.uuid4().hex[:8]}"
        owners.setdefault(redis_cluster.owner_of(ks.owner_jobs(owner)).port, owner)
    admit = BatchedScript(
        client, LuaScript.load("admit.lua"), shared={"pending_ttl": 60, "index_horizon_ms": 3_600_000}, keyspace=ks
    )

    def call(owner: str) -> dict[str, Any]:
        job_id = ks.new_job_id()
        return {
            "owner": owner,
            "job_id": job_id,
            "reserved_as": job_id,
            "idempotency_key": "",
            "digest": "",
            "max_active": 0,
            "active": 0,
            "max_rate": 0,
        }

    async def admit_all(per_owner: int) -> list[dict[str, Any]]:
        calls = [call(owner) for owner in owners.values() for _ in range(per_owner)]
        answers = await asyncio.gather(*(admit(c, ks.bucket_of(c["owner"])) for c in calls))
        assert [a["outcome"] for a in answers] == ["admitted"] * len(calls)
        return calls

    made = await admit_all(1)
    victim = next(iter(owners))
    before = drop_connections(redis_cluster, client, victim)
    made += await admit_all(5)
    assert connections_received(redis_cluster, victim) > before
    for owner in owners.values():
        listed = [fields["j"] for _, fields in await client.xrange(ks.owner_jobs(owner))]
        assert sorted(listed) == sorted(c["job_id"] for c in made if c["owner"] == owner), "a job listed twice"


async def test_admit_run_again_for_the_same_job_lists_it_once(client: RelayCluster) -> None:
    """An admission whose answer was lost (the connection dropped after the send) is sent again: admit.lua makes the
    owner's part once."""
    ks = Keyspace.cluster()
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    job_id = ks.new_job_id()
    one = {
        "owner": owner,
        "job_id": job_id,
        "reserved_as": job_id,
        "idempotency_key": "",
        "digest": "",
        "max_active": 0,
        "active": 0,
        "max_rate": 10,
    }
    shared = encode_call({"pending_ttl": 60, "index_horizon_ms": 3_600_000})
    script = LuaScript.load("admit.lua")
    run = (ks.anchor(ks.bucket_of(owner)), [shared, encode_call(one)])
    answers = []
    for _ in range(2):
        (raw,) = await run_many(client, script, [run])
        answers.extend(orjson.loads(raw))
    entries = await client.xrange(ks.owner_jobs(owner))
    assert [f["j"] for _, f in entries] == [job_id]
    # both answers give the one entry's time: the job's created time (register.lua's admitted_at)
    listed = int(entries[0][0].split("-")[0])
    assert answers == [{"outcome": "admitted", "created": listed}] * 2


async def test_a_claim_round_after_a_dropped_node_claims_each_due_monitor_once(
    redis_cluster: LoopbackCluster, client: RelayCluster
) -> None:
    """Monitors due in buckets of every node; one node's connection dropped before the claim: every monitor is
    claimed at once (a healthy node's claim script run twice would lease its members to an answer thrown away)."""
    store = Store(client, retention=600, job_timeout=600, first_poll=0.0)
    total = 24
    for n in range(total):
        fields = Job(owner="alpha", callback_url=f"http://127.0.0.1:1029/{n}")
        assert (await store.register(secrets.token_hex(16), fields, f"http://127.0.0.1:1029/m/{n}")).created
    await asyncio.sleep(0.05)
    victims = {redis_cluster.owner_of(store.keyspace.anchor(b)).port for b in range(store.keyspace.buckets)}
    assert len(victims) == len(redis_cluster.primary_nodes())
    victim = min(victims)
    await store.monitors.sweep()  # the view of due buckets read now (a pipeline to every node): not in the claim
    await client.script_load(store.monitors._claim.text)  # every primary has it: each node runs its claims at once
    before = drop_connections(redis_cluster, client, victim)
    claimed = []
    for _ in range(3):  # a claim answers what is due; each member once
        claimed += (await store.monitors.claim_batch(100, 30)).claims
    assert connections_received(redis_cluster, victim) > before
    assert sorted(c.member for c in claimed) == sorted({c.member for c in claimed})
    assert len(claimed) == total, f"{total - len(claimed)} monitors leased to answers thrown away"


# ---- RELAY_REDIS_MIN_REPLICAS: WAIT after each node's scripts ------------------------------------------------


async def test_with_min_replicas_batched_scripts_fail_not_replicated_on_a_cluster_without_replicas(
    redis_cluster: LoopbackCluster, redis_cluster_url: str
) -> None:
    """The 3-primary cluster has no replica: each node's WAIT confirms nothing, so every run of a pipeline of
    scripts (registrations, poll results, acks go so) answers NotReplicated; the primaries applied them."""
    durable = redis_client(redis_cluster_url, min_replicas=1, wait_timeout=0.05)
    assert isinstance(durable, RelayCluster)
    names = spread_keys(redis_cluster)
    try:
        answers = await run_many(durable, COUNT, [(name, []) for name in names])
        assert all(isinstance(a, NotReplicated) for a in answers), answers
        assert "0 of 1 replicas" in str(answers[0])
        assert [await durable.get(name) for name in names] == ["1"] * len(names)
        # a batched script (BatchedScript groups by bucket) fails its calls with it too
        ks = Keyspace.cluster()
        admit = BatchedScript(
            durable, LuaScript.load("admit.lua"), shared={"pending_ttl": 60, "index_horizon_ms": 60_000}, keyspace=ks
        )
        job_id = ks.new_job_id()
        one = {"owner": "o", "job_id": job_id, "reserved_as": job_id, "idempotency_key": "", "digest": ""}
        with pytest.raises(NotReplicated):
            await admit({**one, "max_active": 0, "active": 0, "max_rate": 0}, ks.bucket_of("o"))
    finally:
        await durable.aclose()


@pytest.mark.slow
async def test_with_min_replicas_only_the_node_whose_replica_stopped_fails_its_batched_scripts() -> None:
    """3+3: every node's scripts confirmed by its replica; one replica stopped (SIGSTOP, its link to the primary
    cut): that primary's runs answer NotReplicated, the others' their result."""
    cluster = LoopbackCluster(primaries=3, replicas=1)
    cluster.start()
    durable: Redis | None = None
    stopped: int | None = None
    try:
        durable = redis_client(f"redis+cluster://{cluster.hosts()}/", min_replicas=1, wait_timeout=0.3)
        names = spread_keys(cluster)
        runs: list[tuple[str, list[Any]]] = [(name, []) for name in names]
        assert await run_many(durable, COUNT, runs) == [1] * len(names)
        primary = cluster.owner_of(names[0])
        with cluster.admin(primary) as admin:
            replica_ports = [int(r["port"]) for r in admin.info("replication").values() if isinstance(r, dict)]
        (replica_port,) = replica_ports
        replica = cluster.node_at(replica_port)
        assert replica.process is not None
        stopped = replica.process.pid
        os.kill(stopped, signal.SIGSTOP)
        with cluster.admin(primary) as admin:
            admin.execute_command("CLIENT", "KILL", "TYPE", "replica")
        answers = await run_many(durable, COUNT, runs)
        for name, answer in zip(names, answers, strict=True):
            if cluster.owner_of(name).port == primary.port:
                assert isinstance(answer, NotReplicated), (name, answer)
            else:
                assert answer == 2, (name, answer)
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        if durable is not None:
            await durable.aclose()
        cluster.cleanup()
