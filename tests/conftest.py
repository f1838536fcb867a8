"""Fixtures: one real Redis per session (flushed per test), real servers, a real arq worker in-process."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import hypothesis
import pytest
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.store.embedded import EmbeddedRedis
from tests.cluster import LoopbackCluster
from tests.helpers import ENCRYPTION_KEY, SECRET, Api, Receiver, running_api, running_worker

# CI explores the same examples every run (a red CI must mean a regression, not a new random draw);
# locally hypothesis and schemathesis draw fresh examples each time
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="run the tests marked slow too (make cluster-harness)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (make cluster-harness)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LoopbackCluster]:
    """A Redis Cluster of 3 primaries on loopback (tests/cluster.py), started once (~2 s), not flushed: tests
    keep to keys of their own hash tags."""
    cluster = LoopbackCluster(primaries=3)
    try:
        cluster.start()
    except RuntimeError as exc:
        cluster.cleanup()
        pytest.skip(f"no loopback Redis Cluster here: {exc}")
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: LoopbackCluster) -> str:
    """``REDIS_URL`` for relay on the session's cluster (every node a startup node): ``redis+cluster://...``."""
    return f"redis+cluster://{redis_cluster.hosts()}/"


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def settings(redis_server: EmbeddedRedis) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        signing_secrets=(SECRET,),
        encryption_keys=(ENCRYPTION_KEY,),
        monitor_allowed_hosts=("127.0.0.1",),
        item_allowed_hosts=("127.0.0.1",),
        action_allowed_hosts=("127.0.0.1",),
        internal_hosts=("127.0.0.1",),
        poll_initial_interval=0.05,
        poll_max_interval=0.3,
        delivery_schedule=(0, 0.1, 0.2),
        request_timeout=2.0,
        max_invalid_responses=3,
        log_format="console",
    )


@pytest.fixture
async def simulator() -> AsyncIterator[Any]:
    from relay.simulator import Simulator

    sim = Simulator(seed=1)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    yield rec
    await rec.stop()
    assert rec.schema_errors == [], "relay sent events its OpenAPI webhooks do not describe"


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[Api]:
    async with running_api(settings) as client:
        yield client


@pytest.fixture
def start_worker(settings: Settings) -> Callable[..., Any]:
    def start(custom: Settings | None = None, **overrides: Any) -> Any:
        return running_worker(custom or settings, **overrides)

    return start


@pytest.fixture
async def worker(settings: Settings, redis: Redis) -> AsyncIterator[Any]:
    async with running_worker(settings) as w:
        yield w


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    logging.getLogger("arq").setLevel(logging.WARNING)
