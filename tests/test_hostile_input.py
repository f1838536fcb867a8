"""Security round two, as an attacker would try it: hostile JSON, unusable destinations, and who may read /metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.outbound.client import create_session, fetch
from relay.outbound.ssrf import Blocked
from tests.helpers import Api, Receiver, running_api, with_settings

MONITOR = "http://127.0.0.1:1029/monitor/1"


def deep(depth: int) -> bytes:
    body = {"monitorUrl": MONITOR, "callbackUrl": "http://127.0.0.1:1029/h"}
    text = json.dumps(body)[:-1] + ', "metadata": {"x": ' + "[" * depth + "]" * depth + "}}"
    return text.encode()


async def post_raw(api: Api, raw: bytes, path: str = "/v1/jobs", method: str = "POST") -> tuple[int, dict[str, object]]:
    status, body, resp = await api.request(method, path, data=raw, headers={"Content-Type": "application/json"})
    assert resp.content_type == "application/problem+json" or status < 400
    return status, body


@pytest.mark.parametrize("depth", [3000, 20000])
async def test_deeply_nested_metadata_is_a_422_not_a_recursion_error(api: Api, depth: int) -> None:
    raw = deep(depth)
    assert len(raw) < 64 * 1024
    status, problem = await post_raw(api, raw)
    assert status == 422 and "nests deeper than 32 levels" in str(problem["detail"])
    job = await api.create(monitorUrl=MONITOR, callbackUrl="http://127.0.0.1:1029/h")
    status, problem = await post_raw(
        api, b'{"callbackUrl":' + b"[" * depth + b"]" * depth + b"}", method="PATCH", path=f"/v1/jobs/{job['id']}"
    )
    assert status == 422


async def test_thirty_one_levels_of_metadata_are_still_taken(api: Api) -> None:
    status, job = await post_raw(api, deep(30))
    assert status == 201 and job["metadata"] is not None


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_numbers_receivers_cannot_parse_are_refused(api: Api, number: str) -> None:
    raw = f'{{"monitorUrl": "{MONITOR}", "callbackUrl": "http://127.0.0.1:1029/h", "metadata": {{"a": {number}}}}}'
    status, problem = await post_raw(api, raw.encode())
    assert status == 422 and "errors" in problem


async def test_a_duplicate_key_cannot_smuggle_a_second_monitor_url(api: Api) -> None:
    raw = (
        f'{{"monitorUrl": "{MONITOR}", "callbackUrl": "http://127.0.0.1:1029/h", '
        '"monitorUrl": "http://169.254.169.254/latest/meta-data"}'
    ).encode()
    status, problem = await post_raw(api, raw)
    assert status == 422 and problem["errors"][0]["field"] == "monitorUrl"  # type: ignore[index]


@pytest.mark.parametrize(
    "url", ["http://example.com:0/h", "https://example.com:25/h", "http://example.com:22/h", "ftp://example.com/h"]
)
async def test_callbacks_relay_cannot_or_should_not_connect_to_are_refused_at_registration(api: Api, url: str) -> None:
    status, problem, _ = await api.request("POST", "/v1/jobs", json={"monitorUrl": MONITOR, "callbackUrl": url})
    assert status == 422 and problem["errors"][0]["field"] == "callbackUrl", problem


@pytest.fixture
async def trap() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP listener on loopback that counts every connection made to it."""
    hits: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(1)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], hits
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("host", ["0x7f.1", "0177.0.0.1", "127.1", "2130706433", "0x7F000001"])
async def test_other_spellings_of_loopback_never_reach_a_loopback_trap(
    api: Api, receiver: Receiver, trap: tuple[int, list[int]], host: str
) -> None:
    port, hits = trap
    url = f"http://{host}:{port}/h"
    status, problem, _ = await api.request("POST", "/v1/jobs", json={"monitorUrl": MONITOR, "callbackUrl": url})
    assert status == 422, problem
    async with create_session(("127.0.0.1",)) as session:
        with pytest.raises((Blocked, OSError)):
            await fetch(session, "POST", url, trusted_hosts=("127.0.0.1",), time_limit=2, max_body=100)
    assert hits == []


async def test_metrics_can_require_a_token(settings: Settings, redis: Redis) -> None:
    async with running_api(with_settings(settings, api_tokens=("api",), metrics_token="scrape")) as api:
        status, _, resp = await api.request("GET", "/metrics")
        assert status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        status, _, _ = await api.request("GET", "/metrics", headers={"Authorization": "Bearer api"})
        assert status == 401, "an API token is not the metrics token"
        status, _, resp = await api.request("GET", "/metrics", headers={"Authorization": "Bearer scrape"})
        assert status == 200 and resp.content_type == "text/plain"
    async with running_api(with_settings(settings, api_tokens=("api",))) as api:
        status, _, _ = await api.request("GET", "/metrics")
        assert status == 200, "without RELAY_METRICS_TOKEN, /metrics stays open to scrapers"
