"""RELAY_ARQ_REDIS_URL: arq's queue (DriveItem resolution retries) on a Redis of its own. arq needs one Redis
(its enqueue is WATCH + MULTI/EXEC, which a cluster client refuses: tests/test_cluster_harness.py), so a deployment
on a Redis Cluster gives arq a small plain or Sentinel Redis beside it; relay serve / worker / dev refuse to start
on a cluster without one."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from relay.config.settings import ConfigError, Settings
from relay.simulator import Simulator
from relay.store import keys
from relay.store.embedded import EmbeddedRedis
from tests.helpers import (
    ENCRYPTION_KEY,
    RELAY,
    SECRET,
    Receiver,
    ensure_stopped,
    eventually,
    running_api,
    running_worker,
    with_settings,
)
from tests.helpers import relay_env as clean_env
from tests.test_end_to_end import job_fields
from workers.resolve import RESOLVE_TASK


def test_the_setting_takes_a_plain_or_sentinel_url_and_keeps_its_password_out_of_the_logs() -> None:
    settings = Settings.from_env({"RELAY_ARQ_REDIS_URL": "redis://:arq-pw@10.0.0.9:6379/1"})
    assert settings.arq_redis_url == "redis://:arq-pw@10.0.0.9:6379/1"
    assert "arq-pw" in settings.secret_values()
    assert "arq-pw" not in repr(settings)
    assert Settings.from_env({"RELAY_ARQ_REDIS_URL": "redis+sentinel://s1,s2/arq"}).arq_redis_url
    assert Settings.from_env({}).arq_redis_url is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://:hunter2@n1:7000,n2:7000", "arq needs one Redis: a plain or Sentinel URL"),
        ("redis://:hunter2/x@n1:6379/0", "percent-encode it as %2F"),
        ("http://:hunter2@n1", "must start with one of redis://"),
    ],
)
def test_a_url_arq_cannot_use_is_one_line_that_keeps_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RELAY_ARQ_REDIS_URL": url})
    text = str(caught.value)
    assert text.startswith("RELAY_ARQ_REDIS_URL") and message in text and "\n" not in text
    assert "hunter2" not in text


def test_serve_worker_and_dev_stop_at_start_on_a_cluster_without_a_redis_for_arq() -> None:
    env = clean_env(
        REDIS_URL="redis+cluster://:s3cret@127.0.0.1:1,127.0.0.1:2",
        RELAY_SIGNING_SECRETS=SECRET,
        RELAY_ENCRYPTION_KEY=ENCRYPTION_KEY,
        RELAY_PORT="0",
    )
    procs = [
        subprocess.Popen([RELAY, command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # noqa: S603
        for command in ("serve", "worker", "dev")
    ]
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            ensure_stopped(proc)
        assert proc.returncode == 2, err
        assert err.strip().count("\n") == 0 and "set RELAY_ARQ_REDIS_URL" in err, err
        assert "s3cret" not in err


@pytest.fixture(scope="module")
def arq_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis()
    server.start()
    yield server
    server.cleanup()


async def test_arqs_queue_and_its_metric_live_on_the_redis_the_setting_names(
    arq_server: EmbeddedRedis, settings: Settings, redis: Redis, simulator: Simulator, receiver: Receiver
) -> None:
    """State on REDIS_URL, arq on RELAY_ARQ_REDIS_URL: a resolution task is queued there and run by the worker;
    the API's relay_arq_queue_depth counts that queue; REDIS_URL holds no arq key."""
    custom = with_settings(settings, arq_redis_url=arq_server.url)
    arq_redis = Redis.from_url(arq_server.url, decode_responses=True)
    await arq_redis.flushall()
    try:
        async with running_api(custom) as api, running_worker(custom) as worker:
            job = await api.create(**job_fields(simulator, simulator.create(duration=0.2).monitor_url, receiver))
            await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
            await worker.pool.enqueue_job(RESOLVE_TASK, "no-such-job", _queue_name=keys.ARQ_QUEUE, _defer_by=60)
            assert await arq_redis.zcard(keys.ARQ_QUEUE) == 1
            async with api.session.get(api.base + "/metrics") as resp:
                assert resp.status == 200 and "relay_arq_queue_depth 1.0" in await resp.text()
            done = worker.jobs_complete
            await worker.pool.enqueue_job(RESOLVE_TASK, "no-such-job-2", _queue_name=keys.ARQ_QUEUE)

            async def ran() -> bool:
                return bool(worker.jobs_complete > done)

            await eventually(ran)
            assert [key async for key in arq_redis.scan_iter(f"{keys.ARQ_QUEUE}:health-check:*")], "arq's health key"
            assert [key async for key in redis.scan_iter("*arq*")] == [], "no arq key on REDIS_URL"
    finally:
        await arq_redis.aclose()
