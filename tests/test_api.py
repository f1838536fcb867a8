"""The registration API against a real Redis: validation, auth, ownership, idempotency, problem+json."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.store import keys
from tests.helpers import Api, running_api, two_tenants, with_settings

MONITOR = "http://127.0.0.1:1029/monitor/4A3407B5-88FC-4504-8B21-0AABD3412717"
CALLBACK = "http://127.0.0.1:1029/hook"


def body(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"monitorUrl": MONITOR, "callbackUrl": CALLBACK}
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


async def test_register_returns_the_job_without_secrets(api: Api) -> None:
    status, job, resp = await api.request(
        "POST",
        "/v1/jobs",
        json=body(
            driveItemUrl="http://127.0.0.1:1029/v1.0/me/drive/items/{resourceId}",
            authorization="Bearer top-secret-token",
            secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            metadata={"n": 1},
        ),
    )
    assert status == 201
    assert resp.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "notStarted" and job["percentageComplete"] == 0.0
    assert job["metadata"] == {"n": 1} and job["callbackUrl"] == CALLBACK
    assert job["monitorHost"] == "127.0.0.1" and job["sequence"] == 0
    text = str(job)
    assert "top-secret-token" not in text and "whsec_" not in text and "4A3407B5" not in text
    status, again, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
    assert status == 200 and again["id"] == job["id"]


@pytest.mark.parametrize(
    ("kwargs", "status", "title"),
    [
        ({"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415, "Unsupported Media Type"),
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "Malformed JSON"),
        ({"json": [1, 2]}, 422, "Invalid request body"),
        ({"data": b"x" * 70000, "headers": {"Content-Type": "application/json"}}, 413, "Request Entity Too Large"),
    ],
)
async def test_bad_bodies_get_problem_json(api: Api, kwargs: dict[str, Any], status: int, title: str) -> None:
    got, problem, resp = await api.request("POST", "/v1/jobs", **kwargs)
    assert got == status
    assert resp.content_type == "application/problem+json"
    assert problem["status"] == status and problem["title"] == title


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
async def test_a_body_sent_as_json_with_or_without_parameters_registers(api: Api, content_type: str) -> None:
    # the usual header is compared as sent; any other spelling goes through aiohttp's parse
    data = f'{{"monitorUrl": "{MONITOR}", "callbackUrl": "{CALLBACK}"}}'.encode()
    status, job, _ = await api.request("POST", "/v1/jobs", data=data, headers={"Content-Type": content_type})
    assert status == 201, job


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (body(monitorUrl=None), "monitorUrl"),
        (body(callbackUrl="ftp://127.0.0.1/x"), "callbackUrl"),
        (body(monitorUrl="not a url"), "monitorUrl"),
        (body(monitorUrl="https://evil.example.com/monitor/1"), "monitorUrl"),
        (body(driveItemUrl="http://127.0.0.1:1029/items/fixed"), "driveItemUrl"),
        (body(secret="not-whsec"), "secret"),
        (body(unexpected=1), "unexpected"),
        (body(metadata={"big": "x" * 20000}), "metadata"),
        (body(authorization="Bearer x"), "body"),
    ],
)
async def test_invalid_fields_get_422_with_field_errors(api: Api, fields: dict[str, Any], field: str) -> None:
    status, problem, _ = await api.request("POST", "/v1/jobs", json=fields)
    assert status == 422, problem
    assert any(e["field"] == field for e in problem["errors"]), problem


async def test_private_callback_rejected_unless_allowed(settings: Settings, redis: Redis) -> None:
    async with running_api(with_settings(settings, internal_hosts=())) as api:
        for url in ("http://127.0.0.1:1029/hook", "http://169.254.169.254/latest", "http://[::ffff:10.0.0.1]/x"):
            status, problem, _ = await api.request("POST", "/v1/jobs", json=body(callbackUrl=url))
            assert status == 422, url
            assert problem["errors"][0]["field"] in ("callbackUrl", "monitorUrl")


async def test_unknown_job_and_route_are_404_problems(api: Api) -> None:
    for path in ("/v1/jobs/" + "0" * 32, "/v1/jobs/not-an-id", "/nowhere"):
        status, problem, resp = await api.request("GET", path)
        assert status == 404 and resp.content_type == "application/problem+json", path
        assert problem["status"] == 404


async def test_wrong_method_is_405_problem(api: Api) -> None:
    status, problem, resp = await api.request("PUT", "/v1/jobs")
    assert status == 405 and problem["title"] == "Method Not Allowed"
    assert "POST" in resp.headers["Allow"]


async def test_tokens_required_and_jobs_private_to_their_token(settings: Settings, redis: Redis) -> None:
    async with running_api(two_tenants(settings)) as api:
        status, _, resp = await api.request("POST", "/v1/jobs", json=body())
        assert status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        status, _, _ = await api.request("POST", "/v1/jobs", json=body(), headers={"Authorization": "Bearer nope"})
        assert status == 401
        status, job, _ = await api.request("POST", "/v1/jobs", json=body(), headers={"Authorization": "Bearer token-a"})
        assert status == 201
        path = f"/v1/jobs/{job['id']}"
        assert (await api.request("GET", path, headers={"Authorization": "Bearer token-a"}))[0] == 200
        assert (await api.request("GET", path, headers={"Authorization": "Bearer token-b"}))[0] == 404
        assert (await api.request("DELETE", path, headers={"Authorization": "Bearer token-b"}))[0] == 404
        assert (await api.request("GET", "/healthz"))[0] == 200


async def test_idempotency_key_returns_the_same_job(api: Api) -> None:
    headers = {"Idempotency-Key": "copy-42"}
    s1, first, _ = await api.request("POST", "/v1/jobs", json=body(), headers=headers)
    s2, second, _ = await api.request("POST", "/v1/jobs", json=body(), headers=headers)
    assert (s1, s2) == (201, 200) and first["id"] == second["id"]
    s3, problem, _ = await api.request("POST", "/v1/jobs", json=body(metadata={"x": 1}), headers=headers)
    assert s3 == 409 and problem["title"] == "Idempotency-Key reused"
    s4, other, _ = await api.request("POST", "/v1/jobs", json=body(), headers={"Idempotency-Key": "copy-43"})
    assert s4 == 201 and other["id"] != first["id"]


async def test_delete_stops_tracking(api: Api, redis: Redis) -> None:
    job = await api.create(**body())
    assert await redis.zcard(keys.MONITORS) == 1
    status, _, _ = await api.request("DELETE", f"/v1/jobs/{job['id']}")
    assert status == 204
    assert await redis.zcard(keys.MONITORS) == 0
    status, after, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
    assert status == 200 and after["status"] == "cancelled" and after["nextPollDateTime"] is None


async def test_patch_replaces_callback_and_authorization(api: Api, redis: Redis) -> None:
    job = await api.create(
        **body(driveItemUrl="http://127.0.0.1:1029/v1.0/me/drive/items/{resourceId}", authorization="Bearer old")
    )
    status, patched, _ = await api.request(
        "PATCH",
        f"/v1/jobs/{job['id']}",
        json={"callbackUrl": "http://127.0.0.1:1029/new", "authorization": "Bearer new"},
    )
    assert status == 200 and patched["callbackUrl"] == "http://127.0.0.1:1029/new"
    stored = await redis.hget(keys.job(job["id"]), "authorization")
    assert stored is not None and "Bearer" not in stored  # encrypted at rest
    status, _, _ = await api.request("PATCH", f"/v1/jobs/{job['id']}", json={})
    assert status == 422


async def test_health_readiness_and_openapi(api: Api) -> None:
    assert (await api.request("GET", "/healthz"))[0] == 200
    status, ready, _ = await api.request("GET", "/readyz")
    assert status == 200 and ready["status"] == "ready"
    status, doc, _ = await api.request("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/deliveries"} <= set(doc["paths"])
    status, _, resp = await api.request("GET", "/metrics")
    assert status == 200 and resp.content_type == "text/plain"


async def test_readyz_reports_unreachable_redis(settings: Settings) -> None:
    async with running_api(with_settings(settings, redis_url="redis://127.0.0.1:1/0")) as api:
        status, problem, _ = await api.request("GET", "/readyz")
        assert status == 503 and problem["title"] == "Not Ready"


async def test_a_shared_monitor_is_tracked_until_its_last_job_goes(api: Api, redis: Redis) -> None:
    first = await api.create(**body())
    second = await api.create(**body())
    other = await api.create(**body(monitorUrl=MONITOR + "-other"))
    assert await redis.zcard(keys.MONITORS) == 2  # one schedule entry per monitor URL
    (monitor,) = [k for k in await redis.keys(keys.monitor("*")) if await redis.hexists(k, f"j:{first['id']}")]
    assert await redis.hexists(monitor, f"j:{second['id']}")
    assert (await api.request("DELETE", f"/v1/jobs/{first['id']}"))[0] == 204
    assert await redis.exists(monitor) and await redis.zcard(keys.MONITORS) == 2
    assert (await api.request("DELETE", f"/v1/jobs/{second['id']}"))[0] == 204
    assert not await redis.exists(monitor) and await redis.zcard(keys.MONITORS) == 1
    assert (await api.request("GET", f"/v1/jobs/{other['id']}"))[1]["status"] == "notStarted"


async def test_progress_interval_is_bounded_shown_defaulted_and_patchable(settings: Settings, redis: Redis) -> None:
    async with running_api(with_settings(settings, progress_interval=10.0)) as api:
        for bad in (0.5, 0, 3601, "fast", True):
            status, problem, _ = await api.request("POST", "/v1/jobs", json=body(progressInterval=bad))
            assert status == 422 and problem["errors"][0]["field"] == "progressInterval", (bad, problem)
        job = await api.create(**body(progressInterval=5))
        assert job["progressInterval"] == 5.0
        defaulted = await api.create(**body())
        assert defaulted["progressInterval"] == 10.0, "RELAY_PROGRESS_INTERVAL is the default"
        status, patched, _ = await api.request("PATCH", f"/v1/jobs/{job['id']}", json={"progressInterval": 2})
        assert status == 200 and patched["progressInterval"] == 2.0
    async with running_api(settings) as api:
        assert (await api.create(**body()))["progressInterval"] is None


async def test_a_request_line_over_8_kib_gets_the_documented_400(api: Api) -> None:
    status, _, resp = await api.request("GET", "/v1/jobs?cursor=" + "a" * 9000)
    assert status == 400 and resp.content_type == "text/plain"  # aiohttp's parser, before any middleware
    _, document, _ = await api.request("GET", "/openapi.json")
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                assert "text/plain" in operation["responses"]["400"]["content"], f"{method} {path}"
