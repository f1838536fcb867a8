"""REDIS_URL=redis+sentinel://...: the URL form, and relay on real Sentinels through a real failover."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.config.redis_url import parse_sentinel_url
from relay.config.settings import ConfigError, Settings
from relay.simulator import Simulator
from relay.store import keys
from tests.helpers import Receiver, eventually, running_api, running_worker, with_settings
from tests.sentinels import SentinelSetup
from tests.test_end_to_end import job_fields
from workers.resolve import RESOLVE_TASK

# ---- the URL form ------------------------------------------------------------------------------


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    target = parse_sentinel_url("redis+sentinel://:s%40cret@10.0.0.1:26380,sentinel-b,[::1]:26381/mymaster/3")
    assert target.sentinels == (("10.0.0.1", 26380), ("sentinel-b", 26379), ("::1", 26381))
    assert (target.service, target.db, target.tls) == ("mymaster", 3, False)
    assert (target.username, target.password) == (None, "s@cret")
    assert target.data_kwargs() == {"db": 3, "password": "s@cret"}
    assert target.sentinel_kwargs() == {}, "the data nodes' password is not sent to the Sentinels"
    assert "s@cret" not in repr(target)


def test_tls_and_the_sentinels_own_password_apply_where_they_belong() -> None:
    target = parse_sentinel_url(
        "rediss+sentinel://relay:data-pw@s1:26379,s2:26379/relay"
        "?sentinel_password=sentinel-pw&ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required&socket_timeout=3"
    )
    assert target.tls and target.db == 0
    assert target.data_kwargs() == {
        "db": 0,
        "ssl": True,
        "username": "relay",
        "password": "data-pw",
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_cert_reqs": "required",
        "socket_timeout": 3.0,
    }
    assert target.sentinel_kwargs() == {
        "ssl": True,
        "password": "sentinel-pw",
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_cert_reqs": "required",
        "socket_timeout": 3.0,
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://s1:26379", "names the monitored service"),
        ("redis+sentinel://s1:26379/relay/zero", "must be a number"),
        ("redis+sentinel://s1:26379/relay/0/extra", "path is /<service>[/<db>]"),
        ("redis+sentinel://s1:70000/relay", "port must be 1-65535"),
        ("redis+sentinel://s1,,s2/relay", "one host is empty"),
        ("redis+sentinel://s1/relay?db=2", "not ?db="),
        ("redis+sentinel://:hunter2@s1/relay?socket_timeout=soon", "socket_timeout"),
        ("sentinel://s1/relay", "must start with one of redis://"),
        ("redis+sentinel://:hunter2/x@s1,s2/relay", "unescaped '/': percent-encode it as %2F"),
        ("redis+sentinel://:hunter2@s1:hunter3/relay", "port must be 1-65535"),
        ("redis://:hunter2/x@localhost:6379/0", "unescaped '/': percent-encode it as %2F"),
        ("redis://:hunt/er2@localhost:6379/0", "unescaped '/': percent-encode it as %2F"),
        ("rediss://:hunter2?x@localhost:6380/0", "unescaped '?': percent-encode it as %3F"),
        ("redis://:hunter2#x@localhost/0", "unescaped '#': percent-encode it as %23"),
        ("unix://:hunter2/x@/run/redis.sock", "unescaped '/': percent-encode it as %2F"),
        ("redis://:hunter2@localhost:hunter3/0", "the port is not a number"),
        ("redis://:hunter2@[::1:6379/0", "not a valid name or [IPv6] address"),
        ("redis://:hunter2@localhost/hunter3", "the path is the database number"),
    ],
)
def test_a_bad_redis_url_stops_the_process_with_one_line_that_keeps_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"REDIS_URL": url})
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert "hunter" not in text and "hunt" not in text and url not in text


def test_the_durability_settings() -> None:
    settings = Settings.from_env({"RELAY_REDIS_MIN_REPLICAS": "1", "RELAY_REDIS_WAIT_TIMEOUT": "0.25"})
    assert (settings.redis_min_replicas, settings.redis_wait_timeout) == (1, 0.25)
    assert Settings.from_env({}).redis_min_replicas == 0
    with pytest.raises(ConfigError, match="RELAY_REDIS_MIN_REPLICAS"):
        Settings.from_env({"RELAY_REDIS_MIN_REPLICAS": "-1"})


# ---- real Sentinels ----------------------------------------------------------------------------


@pytest.fixture
async def sentinels() -> AsyncIterator[SentinelSetup]:
    setup = SentinelSetup(down_after_ms=500, failover_ms=2000)
    try:
        await setup.start()
        yield setup
    finally:
        await setup.cleanup()


async def test_the_api_and_a_worker_carry_on_through_a_sentinel_failover(
    sentinels: SentinelSetup, settings: Settings, simulator: Simulator, receiver: Receiver, capsys: Any
) -> None:
    custom = with_settings(settings, redis_url=sentinels.url())
    async with running_api(custom) as api, running_worker(custom) as worker:
        before = await api.create(**job_fields(simulator, simulator.create(duration=0.3).monitor_url, receiver))
        await receiver.wait_for(lambda: receiver.terminal(before["id"]) is not None)

        old = await sentinels.kill_primary()
        killed = time.monotonic()
        promoted = await sentinels.wait_promoted(old)
        # the same API and worker, not restarted: the API's request waits in its retries until the
        # Sentinels name the new primary, then succeeds there
        after = await api.create(**job_fields(simulator, simulator.create(duration=0.3).monitor_url, receiver))
        api_back = time.monotonic() - killed
        await receiver.wait_for(lambda: receiver.terminal(after["id"]) is not None)
        worker_back = time.monotonic() - killed
        # arq's pool rode through too: a task enqueued now is run by the same worker
        done = worker.jobs_complete

        async def arq_ran_it() -> bool:
            return bool(worker.jobs_complete > done)

        await worker.pool.enqueue_job(RESOLVE_TASK, "no-such-job", _queue_name=keys.ARQ_QUEUE)
        await eventually(arq_ran_it)
        arq_back = time.monotonic() - killed

        status, job, _ = await api.request("GET", f"/v1/jobs/{before['id']}")
        assert status == 200 and job["status"] == "completed", "the job finished before the failover is still there"
        assert [e["type"] for e in receiver.events(after["id"])][-1] == "job.completed"
        assert await sentinels.master_port() == sentinels.replica_port
        assert not worker.main_task.done(), "arq's loop is still running"
    with capsys.disabled():
        print(
            f"\n  sentinel failover (primary SIGKILLed): promoted after {promoted:.1f} s; the API answered 201 after "
            f"{api_back:.1f} s; a new job's events delivered after {worker_back:.1f} s; an arq task ran after "
            f"{arq_back:.1f} s (down-after-milliseconds 500)"
        )
