"""relay's client for REDIS_URL=redis+cluster://... (relay/store/cluster_client.py) on a real loopback cluster
(tests/cluster.py): commands, pipelines and scripts routed to their nodes, scripts loaded again where a node lacks
them, WAIT for RELAY_REDIS_MIN_REPLICAS on the script's own node, the start's check, TLS with a password, and a
call waiting through a primary's SIGKILL (``--slow``: a 3+3 cluster)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError

from relay.api.middlewares import REFUSED_RETRY_AFTER
from relay.cli.startup import StartupError, check_redis
from relay.config.settings import Settings
from relay.store import cluster_client as cluster_client_module
from relay.store import keys
from relay.store.cluster_client import RelayCluster, is_transient
from relay.store.connections import redis_client, sync_client
from relay.store.durable import NotReplicated
from relay.store.scripts import LuaScript
from tests.cluster import LoopbackCluster, TLSFiles, server_has_tls, slot_of
from tests.helpers import running_api, with_settings
from workers.waker import Waker


def cluster_url(cluster: LoopbackCluster, *, scheme: str = "redis+cluster", auth: str = "", query: str = "") -> str:
    return f"{scheme}://{auth}{cluster.hosts()}/{query}"


def tagged(name: str) -> str:
    """A hash tag of its own per test (its keys share one slot, apart from other tests')."""
    return f"{{{name}-{uuid.uuid4().hex[:8]}}}"


def spread_keys(cluster: LoopbackCluster, count: int = 30) -> list[str]:
    """``count`` keys of this test whose slots cover every primary (the first key found on each, then any: a session
    cluster whose slots another test moved may leave a primary few of them)."""
    primaries = {node.port for node in cluster.primary_nodes()}
    firsts: dict[int, str] = {}
    names: list[str] = []
    for i in range(100_000):
        name = f"{uuid.uuid4().hex}:{i}"
        owner = cluster.owner_of(name).port
        if owner not in firsts:
            firsts[owner] = name
        elif len(names) < count:
            names.append(name)
        if len(firsts) == len(primaries) and len(names) + len(firsts) >= count:
            break
    assert set(firsts) == primaries
    return [*firsts.values(), *names][:count]


COUNT = LuaScript.from_text("count", "return redis.call('INCR', KEYS[1])")


@pytest.fixture
async def client(redis_cluster_url: str) -> AsyncIterator[Redis]:
    """What relay's store is given for a cluster URL (a RelayCluster, typed as the Redis it stands in for)."""
    made = redis_client(redis_cluster_url)
    assert isinstance(made, RelayCluster)
    yield made
    await made.aclose()


async def test_commands_and_pipelines_reach_the_node_of_each_key(redis_cluster: LoopbackCluster, client: Redis) -> None:
    names = spread_keys(redis_cluster)
    for i, name in enumerate(names):
        await client.set(name, i)
    assert [await client.get(name) for name in names] == [str(i) for i in range(len(names))]
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.incr(name)
        assert await pipe.execute() == [i + 1 for i in range(len(names))]
    for name in names:  # each on its own node, as a plain client connected to that node reads it
        with redis_cluster.admin(redis_cluster.owner_of(name)) as admin:
            assert admin.get(name) is not None
    await client.delete(*names[:1])


async def test_a_script_runs_on_the_node_of_its_key_and_is_loaded_again_where_a_node_lacks_it(
    redis_cluster: LoopbackCluster, client: Redis
) -> None:
    key = tagged("script") + "n"
    assert await COUNT.run(client, [key]) == 1
    owner = redis_cluster.owner_of(key)
    with redis_cluster.admin(owner) as admin:
        admin.script_flush()  # as a replica promoted on Redis 7 comes up: without the script
    assert await COUNT.run(client, [key]) == 2, "LuaScript's NOSCRIPT reload through the cluster client"
    with redis_cluster.admin(owner) as admin:
        assert admin.script_exists(COUNT.sha) == [True]


async def test_with_min_replicas_a_script_waits_on_its_own_nodes_connection_and_fails_without_replicas(
    redis_cluster: LoopbackCluster,
) -> None:
    """The 3-primary cluster has no replica: WAIT 1 confirms nothing within the timeout, the write is not done."""
    durable = redis_client(cluster_url(redis_cluster), min_replicas=1, wait_timeout=0.05)
    key = tagged("durable") + "n"
    try:
        began = time.monotonic()
        with pytest.raises(NotReplicated, match="0 of 1 replicas"):
            await COUNT.run(durable, [key])
        assert time.monotonic() - began < 5, "NotReplicated is not retried: it is an answer"
        assert await durable.get(key) == "1", "the primary applied it; the caller treats it as not done"
    finally:
        await durable.aclose()


async def test_a_script_refused_for_a_key_on_another_node_is_retried_until_the_budget_ends(
    redis_cluster: LoopbackCluster,
) -> None:
    """``non local key`` is what a script meets mid-move (its bucket's keys on two nodes): retried, as transient.
    Here the other key never comes: the call ends in the refusal once the budget (0.4 s here) is spent."""
    made = redis_client(cluster_url(redis_cluster))
    assert isinstance(made, RelayCluster)
    made.retry_for = 0.4
    here, elsewhere = tagged("here") + "k", ""
    while not elsewhere or redis_cluster.owner_of(elsewhere).port == redis_cluster.owner_of(here).port:
        elsewhere = tagged("elsewhere") + "k"
    touch = LuaScript.from_text("touch", "return redis.call('GET', ARGV[1])")
    try:
        began = time.monotonic()
        with pytest.raises(ResponseError, match="non local key") as caught:
            await touch.run(made, [here], [elsewhere])
        assert is_transient(caught.value)
        assert 0.3 < time.monotonic() - began < 5
    finally:
        await made.aclose()


async def test_the_start_check_pings_a_cluster_and_names_why_it_cannot(redis_cluster: LoopbackCluster) -> None:
    assert check_redis(cluster_url(redis_cluster), wait=0).startswith(("6.", "7."))
    with sync_client(cluster_url(redis_cluster), timeout=2) as probe:
        assert probe.ping()
    dead = "redis+cluster://127.0.0.1:1,127.0.0.1:2"
    with pytest.raises(ConnectionError):
        sync_client(dead, timeout=1)
    with pytest.raises(
        StartupError, match=re.escape("cannot reach Redis at redis+cluster://127.0.0.1:1,127.0.0.1:2/0")
    ):
        check_redis(dead, wait=0)


async def test_a_cluster_none_of_whose_nodes_answer_is_a_connection_error_once_the_budget_is_spent() -> None:
    made = redis_client("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    assert isinstance(made, RelayCluster)
    made.retry_for = 0.3
    try:
        with pytest.raises(ConnectionError, match="no node of the cluster answered"):
            await made.get("k")
    finally:
        await made.aclose()


async def test_the_client_re_reading_its_slot_map_loses_no_answer_and_runs_no_command_twice(
    redis_cluster: LoopbackCluster, redis_cluster_url: str
) -> None:
    """redis-py re-reads the slot map after an error by closing every connection, those other calls are waiting on
    included (here forced every 5 ms, as errors on one node do through a failover): no call fails, every call is
    counted once (before relay kept waited-on connections open, answers were lost and the retry ran them again)."""
    made = redis_client(redis_cluster_url)
    names = spread_keys(redis_cluster, 20)
    acknowledged = dict.fromkeys(names, 0)
    done = asyncio.Event()

    async def caller(name: str) -> None:
        for _ in range(40):
            await COUNT.run(made, [name])
            acknowledged[name] += 1

    async def disrupt() -> None:
        while not done.is_set():
            await made.aclose()  # what redis-py does after an error: the next call reads the slot map again
            await asyncio.sleep(0.005)

    try:
        await made.ping()
        disruptor = asyncio.create_task(disrupt())
        await asyncio.gather(*(caller(name) for name in names))
        done.set()
        await disruptor
        counted = {name: int(await made.get(name)) for name in names}
    finally:
        await made.aclose()
    assert counted == acknowledged == dict.fromkeys(names, 40)


# ---- TLS and a password ------------------------------------------------------------------------


async def test_tls_and_a_password_from_the_url_reach_every_node(tmp_path: Path) -> None:
    if not server_has_tls():
        pytest.skip("this redis-server is built without TLS")
    files = TLSFiles.make(tmp_path)
    with LoopbackCluster(primaries=3, password="s3cret", tls=files) as cluster:
        url = cluster_url(cluster, scheme="rediss+cluster", auth=":s3cret@", query=f"?ssl_ca_certs={files.ca}")
        made = redis_client(url)
        try:
            names = spread_keys(cluster, 20)
            async with made.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.set(name, 1)
                assert await pipe.execute() == [True] * len(names)
            assert await COUNT.run(made, [tagged("tls") + "n"]) == 1
        finally:
            await made.aclose()
        assert check_redis(url, wait=0)
        wrong = cluster_url(cluster, scheme="rediss+cluster", auth=":wrong@", query=f"?ssl_ca_certs={files.ca}")
        with pytest.raises(AuthenticationError):
            sync_client(wrong, timeout=2)
        with pytest.raises(StartupError, match="refused relay's credentials") as caught:
            check_redis(wrong, wait=0)
        assert "wrong" not in str(caught.value)


# ---- slow: a primary SIGKILLed (3+3) ---------------------------------------------------------------


@pytest.mark.slow
async def test_calls_wait_through_a_primarys_sigkill_and_succeed_on_the_promoted_replica() -> None:
    """60 callers, each calling a script on its own key every 20 ms (keys on every primary), through the SIGKILL of
    one primary: no call fails, none counts less than it was acknowledged, none on the other primaries counts more
    (redis-py's client closed connections other calls were using to re-read the slot map, losing answers that
    relay's retry then asked again: 84 double counts in one run before), the longest waits about as long as the
    promotion takes (node timeout 1 s); on Redis 7 the promoted replica gets the script loaded again (NOSCRIPT, then
    SCRIPT LOAD) without a caller seeing it. Prints the figures."""
    with LoopbackCluster(primaries=3, replicas=1) as cluster:
        made = redis_client(cluster_url(cluster))
        durable = redis_client(cluster_url(cluster), min_replicas=1, wait_timeout=2)
        names = spread_keys(cluster, 60)
        killed_slot = slot_of(names[0])
        elsewhere = [name for name in names if cluster.owner_of(name).port != cluster.owner(killed_slot).port]
        acknowledged = dict.fromkeys(names, 0)
        durations: list[tuple[str, float, float]] = []  # (key, began, ended)
        errors: list[BaseException] = []
        stop = asyncio.Event()

        async def caller(name: str) -> None:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    await COUNT.run(made, [name])
                except Exception as exc:
                    errors.append(exc)
                else:
                    acknowledged[name] += 1
                    durations.append((name, began, time.monotonic()))
                await asyncio.sleep(0.02)

        try:
            assert await COUNT.run(durable, [names[0]]) == 1, "WAIT 1 on the key's node: its replica confirmed"
            acknowledged[names[0]] = 1
            tasks = [asyncio.create_task(caller(name)) for name in names]
            await asyncio.sleep(0.5)
            killed = time.monotonic()
            old = await asyncio.to_thread(cluster.kill_primary_of, killed_slot)
            promoted = await asyncio.to_thread(cluster.wait_promoted, old)
            deadline = time.monotonic() + 30
            while sum(1 for name, began, _ in durations if name == names[0] and began > killed) < 5:
                assert time.monotonic() < deadline, "calls on the promoted replica did not resume"
                await asyncio.sleep(0.05)
            # a call begun after the kill (the old primary gone), or waiting through it: the first that succeeded
            through = [
                end for name, began, end in durations if name == names[0] and (began > killed or end - began > 0.5)
            ]
            back = min(through) - killed
            stop.set()
            await asyncio.gather(*tasks)
            counted = {name: int(await made.get(name)) for name in names}
            with cluster.admin(cluster.owner(killed_slot)) as admin:  # the promoted replica
                major = int(str(admin.info("server")["redis_version"]).split(".")[0])
                refused = admin.info("errorstats").get("errorstat_NOSCRIPT", {}).get("count", 0)
                assert admin.script_exists(COUNT.sha) == [True]
        finally:
            await made.aclose()
            await durable.aclose()
    if major >= 7:  # Redis 7 does not give a replica the scripts loaded on its primary (6.2 does)
        assert refused >= 1, "the promoted replica answered NOSCRIPT and LuaScript loaded the script there"
    assert errors == [], errors[:3]
    assert all(counted[name] >= acknowledged[name] for name in names), "an acknowledged call was lost"
    longest = max(ended - began for _, began, ended in durations)
    twice = sum(counted[name] - acknowledged[name] for name in names)
    # a healthy primary's answers are never lost to the client re-reading its map (relay's _KeptConnection): a
    # command is run twice only where its primary died after running it
    assert sum(counted[name] - acknowledged[name] for name in elsewhere) == 0
    print(
        f"\nSIGKILL of a primary (3+3, node timeout 1 s, 60 callers, {len(durations)} calls): promoted after "
        f"{promoted:.2f} s; no call failed; the longest waited {longest:.2f} s; calls on the killed primary's key "
        f"succeeded again {back:.2f} s after the kill; calls counted twice (sent again after a lost answer): {twice}; "
        f"NOSCRIPT answers of the promoted replica (then loaded): {refused}"
    )
    assert longest > 0.5, "a call did wait through the failover"


# ---- wake channels --------------------------------------------------------------------------------


async def _published_reaches(waker: Waker, cluster: LoopbackCluster, event: asyncio.Event, channel: str) -> None:
    """A message published on a node other than the waker's reaches it."""
    other = next(node for node in cluster.live_nodes() if f"127.0.0.1:{node.port}" != waker.node)
    event.clear()
    deadline = time.monotonic() + 5
    while not event.is_set():  # published again until the subscription is made
        assert time.monotonic() < deadline, "no wake-up"
        with cluster.admin(other) as admin:
            admin.publish(channel, "due")
        await asyncio.sleep(0.05)


async def test_the_waker_subscribes_on_one_node_hears_every_node_and_moves_when_its_node_drops_it(
    redis_cluster: LoopbackCluster, client: Redis
) -> None:
    channel = f"relay:test:{uuid.uuid4().hex}:wake"
    event = asyncio.Event()
    waker = Waker(client, {channel: event})
    waker.start()
    try:
        await _published_reaches(waker, redis_cluster, event, channel)
        first = waker.node
        assert first is not None
        with redis_cluster.admin(redis_cluster.node_at(int(first.rsplit(":", 1)[1]))) as admin:
            admin.client_kill_filter(_type="pubsub")  # the node drops the subscription, as a failing node would
        deadline = time.monotonic() + 5
        while waker.node == first:
            assert time.monotonic() < deadline, "the waker did not move to another node"
            await asyncio.sleep(0.05)
        await _published_reaches(waker, redis_cluster, event, channel)
        assert waker.node != first
    finally:
        await waker.stop()


# ---- a cluster refusing: the API's 503 ------------------------------------------------------------


async def test_a_cluster_down_past_the_retry_budget_is_a_503_with_retry_after_and_not_ready(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A primary without a replica SIGKILLed: the other nodes mark the cluster down (CLUSTERDOWN to every keyed
    command) once the node timeout (1 s) passes. Past the client's retries (0.3 s here, a minute in production)
    the API answers as for every refusal: 503 with Retry-After, /readyz not ready, counted by kind."""
    monkeypatch.setattr(cluster_client_module, "RETRY_FOR", 0.3)
    before = REGISTRY.get_sample_value("relay_redis_refusals_total", {"kind": "clusterdown"}) or 0.0
    with LoopbackCluster(primaries=3) as cluster:
        custom = with_settings(settings, redis_url=cluster_url(cluster))
        async with running_api(custom) as api:
            ready, _, _ = await api.request("GET", "/readyz")
            assert ready == 200
            # a primary other than the readiness probe's: the probe's node answers (CLUSTERDOWN)
            survivor = cluster.owner_of(keys.READY_PROBE)
            cluster.kill(next(node for node in cluster.primary_nodes() if node.port != survivor.port))
            deadline = time.monotonic() + 10
            while True:
                with cluster.admin(survivor) as admin:
                    if admin.execute_command("CLUSTER INFO")["cluster_state"] == "fail":
                        break
                assert time.monotonic() < deadline, "the cluster never said it was down"
                await asyncio.sleep(0.05)
            answers = []
            for _ in range(20):  # a job on a live node answers CLUSTERDOWN; one on the dead node, no connection
                status, problem, resp = await api.request("GET", f"/v1/jobs/{uuid.uuid4().hex}")
                answers.append((status, resp.headers.get("Retry-After"), problem["detail"]))
                if "(clusterdown)" in problem["detail"]:
                    break
            ready, body, _ = await api.request("GET", "/readyz")
    assert answers[-1][:2] == (503, str(REFUSED_RETRY_AFTER)) and "(clusterdown)" in answers[-1][2], answers
    assert all(status == 503 for status, _, _ in answers), answers
    assert ready == 503 and "(clusterdown)" in body["detail"]
    after = REGISTRY.get_sample_value("relay_redis_refusals_total", {"kind": "clusterdown"}) or 0.0
    assert after - before >= 2


async def test_a_pipeline_opened_while_no_node_answers_waits_for_the_cluster_as_a_call_does(
    redis_cluster: LoopbackCluster,
) -> None:
    """The URL names a dead address first: the client reads the slot map from the next, inside the retry; with no
    node answering at all, a pipeline's opening is retried too, then a ConnectionError (not redis-py's exception)."""
    live = redis_client(f"redis+cluster://127.0.0.1:1,{redis_cluster.hosts()}")
    dead = redis_client("redis+cluster://127.0.0.1:1")
    assert isinstance(dead, RelayCluster)
    dead.retry_for = 0.3
    name = tagged("open") + "k"
    try:
        async with live.pipeline(transaction=False) as pipe:
            pipe.set(name, 1)
            pipe.get(name)
            assert await pipe.execute() == [True, "1"]
        began = time.monotonic()
        with pytest.raises(ConnectionError, match="no node of the cluster answered"):
            async with dead.pipeline(transaction=False) as pipe:
                pipe.get(name)
        assert time.monotonic() - began >= 0.1, "retried (0.05 s, then 0.1 s), not refused at once"
    finally:
        await live.aclose()
        await dead.aclose()
