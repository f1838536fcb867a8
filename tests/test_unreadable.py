"""A value damaged in Redis (by hand, by another program, by a bug) never makes a read endpoint answer 500: the
endpoint answers what reads, at their defaults what does not, and names it (``unreadable``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from relay.core.schema import Job
from relay.store import keys
from tests.helpers import Api, Receiver, eventually

COMPLETED = {"status": "completed", "percentageComplete": 100.0, "resourceId": "01ABC"}


async def _dead_job(api: Api, simulator: Any, receiver: Receiver) -> str:
    """A completed job whose job.completed was dead-lettered (three attempts): a job, an event, attempt records."""
    receiver.responder = lambda request, n: web.Response(status=500)
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    job_id: str = (await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url, metadata={"a": "b"}))["id"]

    async def dead() -> bool:
        status, body, _ = await api.request("GET", "/v1/dead-letters")
        return status == 200 and any(d["jobId"] == job_id for d in body["deadLetters"])

    await eventually(dead)
    return job_id


async def _get(api: Api, path: str) -> Any:
    """The answer's body; the status must be 200 (and the body what the OpenAPI document says: Api.request)."""
    status, body, _ = await api.request("GET", path)
    assert status == 200, (path, status, body)
    return body


async def test_damaged_event_fields_and_attempt_records_are_named_and_the_rest_answered(
    api: Api, simulator: Any, receiver: Receiver, worker: Any, redis: Redis
) -> None:
    job_id = await _dead_job(api, simulator, receiver)
    (event_id,) = await redis.lrange(keys.job_events(job_id), 0, -1)  # type: ignore[misc]
    await redis.hset(keys.event(event_id), mapping={"seq": "x", "attempts": "1.5", "created": "?"})
    await redis.rpush(keys.job_attempts(job_id), "{not json")  # type: ignore[misc]

    body = await _get(api, f"/v1/jobs/{job_id}/deliveries")
    assert [e["eventId"] for e in body["events"]] == [event_id]
    assert body["events"][0]["state"] == "dead" and body["events"][0]["type"] == "job.completed"
    assert sorted(body["events"][0]["unreadable"]) == ["attempts", "created", "seq"]
    assert [a["outcome"] for a in body["deliveries"]] == ["failed", "failed", "dead"]
    assert body["unreadableAttempts"] == 1

    view = await _get(api, f"/v1/jobs/{job_id}")
    assert view["status"] == "completed" and view["metadata"] == {"a": "b"}
    assert sorted(view["unreadable"]) == ["attempt", "event.attempts", "event.seq"]
    assert view["delivery"]["state"] == "dead" and view["delivery"]["lastError"] is None
    (listed,) = (await _get(api, "/v1/jobs"))["jobs"]
    assert listed["id"] == job_id and "event.seq" in listed["unreadable"]

    (letter,) = (await _get(api, "/v1/dead-letters"))["deadLetters"]
    assert letter["eventId"] == event_id and sorted(letter["unreadable"]) == ["attempts", "seq"]  # created: not read

    await redis.hset(keys.event(event_id), "state", "bogus")  # a state no version writes: no longer a dead letter
    (event,) = (await _get(api, f"/v1/jobs/{job_id}/deliveries"))["events"]
    assert event["state"] == "pending" and sorted(event["unreadable"]) == ["attempts", "created", "seq", "state"]
    assert (await _get(api, "/v1/dead-letters"))["deadLetters"] == []


async def test_damaged_job_fields_read_as_their_defaults_and_are_named(
    api: Api, simulator: Any, receiver: Receiver, worker: Any, redis: Redis
) -> None:
    job_id = await _dead_job(api, simulator, receiver)
    await redis.hset(
        keys.job(job_id),
        mapping={"seq": "x", "status": "bogus", "percentage": "abc", "polls": "1e3", "metadata": "{not json"},
    )

    view = await _get(api, f"/v1/jobs/{job_id}")
    assert sorted(view["unreadable"]) == ["metadata", "percentage", "polls", "seq", "status"]
    assert (view["status"], view["sequence"], view["percentageComplete"], view["metadata"]) == (
        "notStarted",
        0,
        0.0,
        None,
    )
    assert view["resourceId"] == "01ABC" and view["delivery"]["state"] == "dead"  # the rest as stored
    (listed,) = (await _get(api, "/v1/jobs"))["jobs"]
    assert listed["unreadable"] == view["unreadable"]
    assert (await _get(api, "/v1/jobs?metadata[a]=b"))["jobs"] == []  # damaged metadata matches no filter
    assert (await _get(api, f"/v1/jobs/{job_id}/deliveries"))["events"][0]["state"] == "dead"
    (letter,) = (await _get(api, "/v1/dead-letters"))["deadLetters"]
    assert "unreadable" not in letter


async def test_a_damaged_monitor_poll_count_leaves_the_job_view_answered(
    api: Api, simulator: Any, receiver: Receiver, redis: Redis
) -> None:
    op = simulator.create(duration=30)
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    monitor_key = await redis.hget(keys.job(job["id"]), Job.name_of(lambda j: j.monitor_key))  # type: ignore[misc]
    await redis.hset(keys.monitor(monitor_key), "polls", "many")  # type: ignore[misc]
    view = await _get(api, f"/v1/jobs/{job['id']}")
    assert view["unreadable"] == ["monitor"] and view["pollCount"] == 0 and view["status"] == "notStarted"
