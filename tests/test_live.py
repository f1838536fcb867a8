"""Events without a public endpoint: SSE, long-poll, the owner's listing, stream and dead letters."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook

from relay.config.settings import Settings
from relay.simulator import Simulator
from tests.helpers import Api, Receiver, auth, eventually, read_sse, running_api, two_tenants

JOB_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="  # base64 of 32 letters


@pytest.fixture
async def owned_api(settings: Settings, redis: Redis) -> AsyncIterator[Api]:
    """An API with two tokens, so ownership matters."""
    async with running_api(two_tenants(settings)) as client:
        yield client


async def create_as(api: Api, token: str, **body: Any) -> dict[str, Any]:
    status, job, _ = await api.request("POST", "/v1/jobs", json=body, headers=auth(token))
    assert status == 201, job
    result: dict[str, Any] = job
    return result


def fields(sim: Simulator, receiver: Receiver, **knobs: Any) -> dict[str, Any]:
    op = sim.create(**knobs)
    return {"monitorUrl": op.monitor_url, "callbackUrl": receiver.url}


async def event_ids(api: Api, job_id: str, **kwargs: Any) -> list[str]:
    status, body, _ = await api.request("GET", f"/v1/jobs/{job_id}/deliveries", **kwargs)
    assert status == 200
    return [e["eventId"] for e in body["events"]]


# -- SSE of one job ---------------------------------------------------------------------------


async def test_sse_sends_every_event_in_order_signed_then_closes(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    job = await api.create(**fields(simulator, receiver, duration=0.6), secret=JOB_SECRET)
    async with api.session.get(f"{api.base}/v1/jobs/{job['id']}/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        messages = await asyncio.wait_for(read_sse(resp), 10)  # ends by itself after the terminal event

    assert messages[-1]["event"] == "job.completed"
    assert [m["id"] for m in messages] == await event_ids(api, job["id"])
    sequences = [json.loads(m["data"])["data"]["sequence"] for m in messages]
    assert sequences == list(range(1, len(messages) + 1))
    for message in messages:
        assert message["webhook-id"] == message["id"]
        headers = {k: message[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        assert len(headers["webhook-signature"].split(" ")) == 1  # the job's own secret replaces the relay's
        event = Webhook(JOB_SECRET).verify(message["data"], headers)
        assert event["type"] == message["event"] and event["data"]["jobId"] == job["id"]
    # the bytes are the ones the callback got
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    assert messages[-1]["data"].encode() == next(
        r.body for r in receiver.received if r.headers["webhook-id"] == messages[-1]["id"]
    )


async def test_sse_resumes_after_last_event_id(api: Api, simulator: Simulator, receiver: Receiver, worker: Any) -> None:
    job = await api.create(**fields(simulator, receiver, duration=0.4))
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    ids = await event_ids(api, job["id"])
    assert len(ids) >= 2

    url = f"{api.base}/v1/jobs/{job['id']}/events"
    async with api.session.get(url, headers={"Last-Event-ID": ids[0]}) as resp:
        resumed = await asyncio.wait_for(read_sse(resp), 5)
    assert [m["id"] for m in resumed] == ids[1:]
    async with api.session.get(url, headers={"Last-Event-ID": ids[-1]}) as resp:
        assert await asyncio.wait_for(read_sse(resp), 5) == []
    async with api.session.get(url, headers={"Last-Event-ID": "msg_unknown"}) as resp:
        assert [m["id"] for m in await asyncio.wait_for(read_sse(resp), 5)] == ids


async def test_sse_waits_for_new_events_and_ends_when_the_job_is_cancelled(
    api: Api, simulator: Simulator, receiver: Receiver
) -> None:
    job = await api.create(**fields(simulator, receiver, duration=60))  # no worker: no events
    started = time.monotonic()
    async with api.session.get(f"{api.base}/v1/jobs/{job['id']}/events") as resp:
        reading = asyncio.create_task(read_sse(resp))
        await asyncio.sleep(0.7)
        assert not reading.done(), "the stream ended while the job was still tracked"
        status, _, _ = await api.request("DELETE", f"/v1/jobs/{job['id']}")
        assert status == 204
        assert await asyncio.wait_for(reading, 3) == []
    assert time.monotonic() - started < 3


async def test_sse_is_owned_like_every_job_route(owned_api: Api, simulator: Simulator, receiver: Receiver) -> None:
    job = await create_as(owned_api, "token-a", **fields(simulator, receiver))
    path = f"/v1/jobs/{job['id']}/events"
    status, body, _ = await owned_api.request("GET", path, headers=auth("token-b"))
    assert status == 404 and body["title"] == "Not Found"
    status, _, _ = await owned_api.request("GET", path)
    assert status == 401


# -- GET /v1/jobs/{id}?wait= ------------------------------------------------------------------


async def test_wait_returns_as_soon_as_the_sequence_changes(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    job = await api.create(**fields(simulator, receiver, duration=1.0))
    assert job["sequence"] == 0
    started = time.monotonic()
    status, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}?wait=10&sequence=0")
    assert status == 200 and body["sequence"] >= 1
    assert time.monotonic() - started < 5
    # without sequence=, the value at request time is the baseline
    seen = body["sequence"]
    status, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}?wait=10")
    assert status == 200 and (body["sequence"] > seen or body["status"] == "completed")
    # a terminal job answers at once
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    started = time.monotonic()
    status, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}?wait=10")
    assert status == 200 and body["status"] == "completed"
    assert time.monotonic() - started < 1


async def test_wait_times_out_with_the_unchanged_job(api: Api, simulator: Simulator, receiver: Receiver) -> None:
    job = await api.create(**fields(simulator, receiver, duration=60))  # no worker: nothing changes
    started = time.monotonic()
    status, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}?wait=0.6")
    elapsed = time.monotonic() - started
    assert status == 200 and body["sequence"] == 0
    assert 0.55 <= elapsed < 2
    # a sequence other than the job's answers at once
    started = time.monotonic()
    status, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}?wait=10&sequence=7")
    assert status == 200 and time.monotonic() - started < 1


@pytest.mark.parametrize("query", ["wait=abc", "wait=-1", "wait=61", "wait=nan", "wait=inf", "wait=5&sequence=x"])
async def test_bad_wait_is_422(api: Api, simulator: Simulator, receiver: Receiver, query: str) -> None:
    job = await api.create(**fields(simulator, receiver))
    status, body, resp = await api.request("GET", f"/v1/jobs/{job['id']}?{query}")
    assert status == 422 and resp.content_type == "application/problem+json"
    assert body["errors"][0]["field"] in ("wait", "sequence")


# -- GET /v1/jobs -----------------------------------------------------------------------------


async def test_listing_is_newest_first_paginated_and_owned(
    owned_api: Api, simulator: Simulator, receiver: Receiver
) -> None:
    mine = []
    for _ in range(5):
        mine.append(await create_as(owned_api, "token-a", **fields(simulator, receiver)))
        await create_as(owned_api, "token-b", **fields(simulator, receiver))  # interleaved
        await asyncio.sleep(0.002)  # distinct creation times
    newest_first = [j["id"] for j in reversed(mine)]

    status, body, _ = await owned_api.request("GET", "/v1/jobs", headers=auth("token-a"))
    assert status == 200 and [j["id"] for j in body["jobs"]] == newest_first and body["nextCursor"] is None
    assert body["jobs"][0]["status"] == "notStarted" and "monitorUrl" not in body["jobs"][0]

    pages: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = await owned_api.request("GET", "/v1/jobs" + query, headers=auth("token-a"))
        assert status == 200 and len(body["jobs"]) <= 2
        pages.extend(j["id"] for j in body["jobs"])
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == newest_first

    status, body, _ = await owned_api.request("GET", "/v1/jobs", headers=auth("token-b"))
    assert status == 200 and len(body["jobs"]) == 5 and not set(newest_first) & {j["id"] for j in body["jobs"]}
    status, _, _ = await owned_api.request("GET", "/v1/jobs")
    assert status == 401


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=abc", "cursor=nope", "cursor=1.XYZ"])
async def test_bad_listing_query_is_422(api: Api, query: str) -> None:
    status, body, _ = await api.request("GET", f"/v1/jobs?{query}")
    assert status == 422 and body["errors"][0]["field"] in ("limit", "cursor")


async def test_listing_finds_jobs_by_their_metadata(owned_api: Api, simulator: Simulator, receiver: Receiver) -> None:
    tagged = [
        await create_as(owned_api, "token-a", **fields(simulator, receiver), metadata={"order": f"A-{i}", "n": i})
        for i in range(3)
    ]
    await create_as(owned_api, "token-a", **fields(simulator, receiver))  # no metadata
    await create_as(owned_api, "token-b", **fields(simulator, receiver), metadata={"order": "A-1"})  # not mine

    async def found(query: str) -> list[str]:
        status, body, _ = await owned_api.request("GET", f"/v1/jobs?{query}", headers=auth("token-a"))
        assert status == 200, body
        return [job["id"] for job in body["jobs"]]

    assert await found("metadata[order]=A-1") == [tagged[1]["id"]]
    assert await found("metadata%5Border%5D=A-2&metadata[n]=2") == [tagged[2]["id"]]  # numbers as their JSON text
    assert await found("metadata[order]=A-1&metadata[n]=2") == []
    assert await found("metadata[missing]=x") == []
    # a page of one, filtered, still pages on to the next match
    _, body, _ = await owned_api.request("GET", "/v1/jobs?limit=1&metadata[n]=0", headers=auth("token-a"))
    assert [job["id"] for job in body["jobs"]] == [tagged[0]["id"]]


@pytest.mark.parametrize("query", ["metadata[]=x", "metadata=x", "metadata[a][b]=x", "metadata[a]=x&metadata[a]=y"])
async def test_a_bad_metadata_filter_is_422_naming_it(api: Api, query: str) -> None:
    status, body, _ = await api.request("GET", f"/v1/jobs?{query}")
    assert status == 422 and body["errors"][0]["field"].startswith("metadata"), body


# -- GET /v1/stream and /v1/dead-letters ------------------------------------------------------


async def test_owner_stream_sends_a_snapshot_then_changes(
    owned_api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    old = await create_as(owned_api, "token-a", **fields(simulator, receiver, duration=60))
    other = await create_as(owned_api, "token-b", **fields(simulator, receiver, duration=0.3))
    async with owned_api.session.get(f"{owned_api.base}/v1/stream", headers=auth("token-a")) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        first = await asyncio.wait_for(read_sse(resp, until=1), 3)
        assert first[0]["event"] == "job"
        assert json.loads(first[0]["data"])["id"] == old["id"]
        new = await create_as(owned_api, "token-a", **fields(simulator, receiver, duration=0.3))
        seen: dict[str, str] = {}
        while seen.get(new["id"]) != "completed":
            (message,) = await asyncio.wait_for(read_sse(resp, until=1), 5)
            job = json.loads(message["data"])
            seen[job["id"]] = job["status"]
        assert other["id"] not in seen


async def test_dead_letters_are_listed_for_their_owner_and_redeliverable(
    owned_api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    receiver.responder = lambda request, n: web.Response(status=500)
    completed = {"status": "completed", "percentageComplete": 100.0, "resourceId": "01ABC"}
    op = simulator.create(script=[{"status": 200, "body": completed}])
    job = await create_as(owned_api, "token-a", monitorUrl=op.monitor_url, callbackUrl=receiver.url)

    async def dead() -> bool:
        _, body, _ = await owned_api.request("GET", "/v1/dead-letters", headers=auth("token-a"))
        return bool(body["deadLetters"])

    await eventually(dead, timeout=10)
    _, body, _ = await owned_api.request("GET", "/v1/dead-letters", headers=auth("token-a"))
    (letter,) = body["deadLetters"]
    assert letter["jobId"] == job["id"] and letter["type"] == "job.completed" and letter["attempts"] == 3
    _, body, _ = await owned_api.request("GET", "/v1/dead-letters", headers=auth("token-b"))
    assert body["deadLetters"] == []

    receiver.responder = None
    status, _, _ = await owned_api.request("POST", f"/v1/jobs/{job['id']}/redeliver", headers=auth("token-a"))
    assert status == 202
    await receiver.wait_for(lambda: any(r.headers["webhook-id"] == letter["eventId"] for r in receiver.verified))
    _, body, _ = await owned_api.request("GET", "/v1/dead-letters", headers=auth("token-a"))
    assert body["deadLetters"] == []


# -- /ui --------------------------------------------------------------------------------------


async def test_ui_files_are_public_but_its_data_is_not(owned_api: Api) -> None:
    status, _, resp = await owned_api.request("GET", "/ui")
    assert status == 200 and resp.content_type == "text/html"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, _, resp = await owned_api.request("GET", f"/ui/static/{name}")
        assert status == 200 and resp.content_type == kind
    for path in ("/ui/static/nope.js", "/ui/static/..%2Fui.py", "/ui/static/index.htm"):
        status, _, _ = await owned_api.request("GET", path)
        assert status == 404, path
    status, _, _ = await owned_api.request("POST", "/ui")
    assert status in (401, 405)
    for path in ("/v1/jobs", "/v1/stream", "/v1/dead-letters"):
        status, _, _ = await owned_api.request("GET", path)
        assert status == 401, path
