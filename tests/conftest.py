"""Fixtures: one real Redis per session (flushed per test), real servers, a real arq worker in-process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import hypothesis
import pytest
from aiohttp import web
from redis.asyncio import Redis

from relay.api.app import create_app
from relay.settings import Settings
from relay.store.embedded import EmbeddedRedis
from tests.helpers import SECRET, Receiver
from workers.main import create_worker

# CI explores the same examples every run (a red CI must mean a regression, not a new random draw);
# locally hypothesis and schemathesis draw fresh examples each time
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis()
    server.start()
    yield server
    server.cleanup()


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


class Api:
    """A real relay API on a loopback port and a client session for it."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            body: Any = None
            if text and resp.content_type in ("application/json", "application/problem+json"):
                import json

                body = json.loads(text)
                _check_answer(path, resp.status, body)
            return resp.status, body, resp

    async def create(self, **fields: Any) -> dict[str, Any]:
        status, body, _ = await self.request("POST", "/v1/jobs", json=fields)
        assert status == 201, body
        result: dict[str, Any] = body
        return result


def _check_answer(path: str, status: int, body: Any) -> None:
    """Answers match the models the OpenAPI document is generated from (relay/api/schemas.py)."""
    from relay.api.schemas import JobPage, JobView, Problem

    route = path.split("?", 1)[0]
    if status >= 400:
        Problem.model_validate(body)
    elif route == "/v1/jobs" and "jobs" in body:
        JobPage.model_validate(body)
    elif route.startswith("/v1/jobs") and route.count("/") <= 3 and isinstance(body, dict) and "id" in body:
        JobView.model_validate(body)


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{port}", session)
    await runner.cleanup()


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[Api]:
    async with running_api(settings) as client:
        yield client


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, **overrides: Any) -> AsyncIterator[Any]:
    worker = create_worker(settings, handle_signals=False, poll_delay=0.05, **overrides)
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        await worker.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.replace(**changes)
