"""The backstop (workers/backstop.py): a poll, delivery or resolution failing with an unexpected exception three
times in a row is parked, with the error recorded, counted in relay_parked_total and logged once.

Before, each of these failed again at every lease, forever, with a traceback each time. The failures are made
the way they happen: a field in Redis that does not read (a bug, a partial write, an older version's data).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from relay import logs, metrics
from relay.store import keys
from relay.store.scheduler import Claim
from tests.helpers import Api, Receiver, eventually
from tests.test_peer_faults import COMPLETED, Peer, ascii_json, running_peer
from workers.backstop import Backstop, counts
from workers.resolve import resolve_guarded


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with running_peer() as p:
        yield p


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", logging.INFO, stream)
    yield stream
    logs.configure("json", logging.WARNING)


def parked(kind: str) -> float:
    return metrics.PARKED.labels(kind=kind)._value.get()


def lines(stream: io.StringIO, event: str) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [line for line in found if line.get("event") == event]


async def test_a_poll_that_keeps_failing_fails_its_jobs_with_an_internal_error(
    api: Api, worker: Any, receiver: Receiver, peer: Peer, redis: Redis, json_logs: io.StringIO
) -> None:
    peer.monitor = (202, ascii_json({"status": "inProgress", "percentageComplete": 5}))
    url = f"{peer.base}/monitor/1"
    jobs = [await api.create(monitorUrl=url, callbackUrl=receiver.url) for _ in range(2)]
    before = parked("poll")
    # a field of one job that does not read: every claim of the monitor the two jobs share raises
    await redis.hset(keys.job(jobs[0]["id"]), "auth_asks", "not a number")
    for job in jobs:
        await receiver.wait_for(lambda j=job: receiver.terminal(j["id"]) is not None, timeout=20)
        event = receiver.terminal(job["id"])
        assert event is not None and event["type"] == "job.failed"
        assert event["data"]["error"]["code"] == "internalError", event
        assert "3 times in a row" in event["data"]["error"]["message"]
    assert parked("poll") == before + 1
    assert len(lines(json_logs, "parked")) == 1
    failures = lines(json_logs, "member failed")
    assert len(failures) == 1 and "Traceback" in failures[0]["exception"]  # the traceback once, not every lease


async def test_a_poll_whose_job_holds_a_word_no_version_writes_is_parked_too(
    api: Api, worker: Any, receiver: Receiver, peer: Peer, redis: Redis, json_logs: io.StringIO
) -> None:
    # a choice field (phase, status...) with an unknown value raises KeyError, not ValueError: the park read the
    # job's fields through a filter that let it through, and failed ('park failed') at every lease, for ever
    peer.monitor = (202, ascii_json({"status": "inProgress", "percentageComplete": 5}))
    job = await api.create(monitorUrl=f"{peer.base}/monitor/2", callbackUrl=receiver.url)
    before = parked("poll")
    await redis.hset(keys.job(job["id"]), "phase", "bogus")
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=20)
    event = receiver.terminal(job["id"])
    assert event is not None and event["data"]["error"]["code"] == "internalError", event
    assert parked("poll") == before + 1
    assert lines(json_logs, "park failed") == []


async def test_a_delivery_that_keeps_failing_dead_letters_its_event(
    api: Api, worker: Any, receiver: Receiver, peer: Peer, redis: Redis, json_logs: io.StringIO
) -> None:
    peer.monitor = (202, ascii_json({"status": "notStarted"}))
    job = await api.create(monitorUrl=f"{peer.base}/monitor/1", callbackUrl=receiver.url)
    receiver.responder = lambda request, n: __import__("aiohttp").web.Response(status=500)
    await receiver.wait_for(lambda: len(receiver.received) >= 1, timeout=10)  # the first event, not delivered
    before = parked("delivery")
    events = await redis.lrange(keys.job_events(job["id"]), 0, -1)
    await redis.hset(keys.event(events[0]), "schedule_from", "not a number")  # its outbox no longer reads

    async def attempts() -> list[dict[str, Any]]:  # read from Redis: the API cannot show an event that does not read
        return [json.loads(a) for a in await redis.lrange(keys.job_attempts(job["id"]), 0, -1)]

    async def dead() -> bool:
        return any(a["outcome"] == "dead" for a in await attempts())

    await eventually(dead, timeout=20)
    last = (await attempts())[-1]
    assert last["outcome"] == "dead" and "internal error" in last["error"] and "3 times in a row" in last["error"]
    assert parked("delivery") == before + 1
    assert len(lines(json_logs, "parked")) == 1


async def test_a_resolution_that_keeps_failing_fails_its_job(
    api: Api, worker: Any, receiver: Receiver, peer: Peer, redis: Redis, json_logs: io.StringIO
) -> None:
    peer.monitor = (202, ascii_json({"status": "notStarted"}))
    job = await api.create(
        monitorUrl=f"{peer.base}/monitor/1",
        callbackUrl=receiver.url,
        driveItemUrl=peer.item_url,
        authorization="Bearer t",
    )
    before = parked("resolution")
    await redis.hset(keys.job(job["id"]), "drive_item", "{not json")  # the resolution raises reading it
    peer.monitor = (200, ascii_json(COMPLETED))  # the poll marks it resolving and resolves it at once: strike 1

    async def struck() -> bool:
        return await redis.get(keys.strikes("resolution", job["id"])) == "1"

    await eventually(struck, timeout=10)
    deps = worker.ctx["deps"]
    # what the completed monitor's recheck does every minute (RESOLVE_RECHECK): strike 2, then 3
    assert await resolve_guarded(deps, job["id"], 1) == "failed"
    assert await resolve_guarded(deps, job["id"], 1) == "parked"
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=10)
    event = receiver.terminal(job["id"])
    assert event is not None and event["type"] == "job.failed"
    assert event["data"]["error"]["code"] == "internalError"
    assert parked("resolution") == before + 1
    assert await resolve_guarded(deps, job["id"], 1) == "skipped"  # ended: nothing more
    assert len(lines(json_logs, "parked")) == 1


async def test_a_park_is_counted_and_logged_once_made_even_if_its_strikes_are_not_cleared(
    worker: Any, redis: Redis, json_logs: io.StringIO
) -> None:
    """The park is counted as soon as it is made, before its strikes are cleared: what it sent (a job's failure) may
    reach its receiver before that Redis call returns, and when the call fails the park was made all the same.
    Before, relay_parked_total and the "parked" line came after the clearing, and not at all when it failed."""
    member = "m" * 22
    made: list[str] = []

    async def park(member: str, claim: Claim | None, error: str) -> None:
        made.append(error)
        await redis.execute_command("ACL", "SETUSER", "default", "-del")  # the clearing (DEL) is refused from now

    backstop = Backstop(worker.ctx["deps"].store, "poll", park, strikes=1)
    before = parked("poll")
    try:
        assert await backstop.failed(member, None, ValueError("a field that does not read")) == 1
    finally:
        await redis.execute_command("ACL", "SETUSER", "default", "+del")
    assert made == ["ValueError, 1 times in a row"] and parked("poll") == before + 1
    assert len(lines(json_logs, "parked")) == 1 and len(lines(json_logs, "strikes not cleared")) == 1
    assert await redis.get(keys.strikes("poll", member)) == "1"  # left to expire


@pytest.mark.parametrize(
    ("exc", "strike"),
    [
        (ValueError("a field that does not read"), True),
        (ResponseError("relay script failed: Expected value but found invalid unicode escape code"), True),
        (ResponseError("READONLY You can't write against a read only replica."), False),
        (ResponseError("relay script failed: OOM command not allowed when used memory > 'maxmemory'"), False),
        (RedisConnectionError("Connection refused"), False),
        (ConnectionResetError(), False),
        (TimeoutError(), False),
    ],
)
def test_only_what_is_the_members_fault_is_a_strike(exc: BaseException, strike: bool) -> None:
    assert counts(exc) is strike
