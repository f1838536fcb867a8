"""A tokenless relay (``relay dev`` on loopback) answers only requests addressed to a loopback name, and
changes nothing for a page of another origin: a DNS-rebinding page (its own name resolving to 127.0.0.1)
could otherwise list jobs and PATCH a callback to its own host."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from relay.config.settings import Settings
from tests.helpers import Api, running_api, with_settings

JOB = {"monitorUrl": "http://127.0.0.1:1029/monitor/1", "callbackUrl": "http://127.0.0.1:1029/hook"}


async def test_a_request_addressed_to_another_name_is_refused(api: Api) -> None:
    job = await api.create(**JOB)
    port = api.base.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "[::2]", f"localhost.evil:{port}"):
        status, problem, _ = await api.request("GET", "/v1/jobs", headers={"Host": host})
        assert status == 403 and "RELAY_API_TOKENS" in problem["detail"], host
    patch = {"callbackUrl": "http://127.0.0.1:1029/rebound"}
    status, _, _ = await api.request("PATCH", f"/v1/jobs/{job['id']}", json=patch, headers={"Host": "evil.example"})
    assert status == 403
    _, stored, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
    assert stored["callbackUrl"] == JOB["callbackUrl"], "the rebinding page moved the callback"
    for host in (f"localhost:{port}", f"LOCALHOST:{port}", "127.0.0.1", f"[::1]:{port}", f"127.0.0.1:{port}"):
        status, page, _ = await api.request("GET", "/v1/jobs", headers={"Host": host})
        assert status == 200 and [j["id"] for j in page["jobs"]] == [job["id"]], host


async def test_changes_asked_by_a_page_of_another_origin_are_refused(api: Api) -> None:
    job = await api.create(**JOB)
    same = api.base  # http://127.0.0.1:<port>: the dashboard's own origin
    for origin in ("http://evil.example", "null", "http://localhost:3000", "https://127.0.0.1", same + "0"):
        headers = {"Origin": origin}
        status, _, _ = await api.request("POST", "/v1/jobs", json=JOB, headers=headers)
        assert status == 403, origin
        status, _, _ = await api.request("DELETE", f"/v1/jobs/{job['id']}", headers=headers)
        assert status == 403, origin
    status, _, _ = await api.request("GET", "/v1/jobs", headers={"Origin": "http://evil.example"})
    assert status == 200, "a cross-origin read is the browser's to withhold (no CORS headers)"
    status, created, _ = await api.request("POST", "/v1/jobs", json=JOB, headers={"Origin": same})
    assert status == 201, created
    status, _, _ = await api.request("DELETE", f"/v1/jobs/{job['id']}", headers={"Origin": same})
    assert status == 204


async def test_the_configured_loopback_address_is_a_loopback_name(settings: Settings, redis: Redis) -> None:
    async with running_api(with_settings(settings, host="127.0.0.2")) as api:
        status, _, _ = await api.request("GET", "/v1/jobs", headers={"Host": "127.0.0.2:8080"})
        assert status == 200


async def test_with_api_tokens_the_token_decides(settings: Settings, redis: Redis) -> None:
    async with running_api(with_settings(settings, api_tokens=("tok",))) as api:
        headers: dict[str, Any] = {"Host": "relay.internal.example", "Authorization": "Bearer tok"}
        status, _, _ = await api.request("GET", "/v1/jobs", headers=headers)
        assert status == 200
        status, _, _ = await api.request("POST", "/v1/jobs", json=JOB, headers={**headers, "Origin": "https://app"})
        assert status == 201


async def test_a_request_without_a_host_header_is_answered(api: Api) -> None:
    """HTTP/1.0 clients may send no Host; no browser does, so nothing is opened to a page by answering them."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(api.base.rsplit(":", 1)[1]))
    writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.split(b" ")[1] == b"200", status_line
