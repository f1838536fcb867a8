"""Write-behind on the workers' hot paths (workers/writes.py) against a real Redis."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest
from redis.asyncio import Redis

from relay import logs
from relay.core.schema import Monitor
from relay.store.jobs import PollWritten, Store
from relay.store.scheduler import Claim
from workers import writes
from workers.writes import after_write


def _stale_claim() -> Claim:
    return Claim(member="no-such-monitor", token="t", now_ms=0)


async def test_a_runner_moves_on_and_the_follow_up_runs_once_the_write_lands(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    answers: list[Any] = []
    pending = store.submit_poll(_stale_claim(), Monitor(), [], 1.0)
    await after_write(store, pending, answers.append, what="poll result", member="m")
    assert not pending.done() and answers == [], "the runner did not wait for its write"
    await store.drain()
    await asyncio.sleep(0)  # done callbacks run in the next loop turn
    assert answers == [PollWritten(True, [])]


async def test_with_a_long_backlog_the_runner_waits_for_its_own_write(redis: Redis, monkeypatch: Any) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    monkeypatch.setattr(writes, "MAX_BACKLOG", 2)
    others = [store.submit_poll(_stale_claim(), Monitor(), [], 1.0) for _ in range(3)]
    answers: list[Any] = []
    pending = store.submit_poll(_stale_claim(), Monitor(), [], 1.0)
    await after_write(store, pending, answers.append, what="poll result", member="m")
    assert pending.done() and answers == [PollWritten(True, [])], "waited, then followed up at once"
    await asyncio.gather(*others)


@pytest.mark.parametrize("max_backlog", [1000, -1], ids=["handed-over", "waited-for"])
async def test_a_failed_write_is_logged_and_its_follow_up_skipped(
    redis: Redis, monkeypatch: Any, max_backlog: int
) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    monkeypatch.setattr(writes, "MAX_BACKLOG", max_backlog)  # -1: the runner waits for its write, as when backlogged
    answers: list[Any] = []
    pending: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    lines = io.StringIO()
    logs.configure("json", logging.INFO, lines)
    try:
        asyncio.get_running_loop().call_soon(pending.set_exception, ConnectionError("Redis went away"))
        await after_write(store, pending, answers.append, what="delivery ack", member="job-1")
        await asyncio.wait((pending,))
        await asyncio.sleep(0)  # done callbacks run in the next loop turn
    finally:
        logs.configure("json", logging.WARNING)
    assert answers == []
    (line,) = [json.loads(text) for text in lines.getvalue().splitlines()]
    assert line["event"] == "delivery ack not written"
    assert line["error"] == "ConnectionError: Redis went away"


@pytest.mark.parametrize("max_backlog", [1000, -1], ids=["handed-over", "waited-for"])
async def test_a_write_handed_over_with_what_follows_it_runs_that_once_as_it_lands(
    redis: Redis, monkeypatch: Any, max_backlog: int
) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    monkeypatch.setattr(writes, "MAX_BACKLOG", max_backlog)  # -1: the runner waits for its write, as when backlogged
    answers: list[Any] = []
    then = writes.landing(answers.append, what="poll result", member="m")
    pending = store.submit_poll(_stale_claim(), Monitor(), [], 1.0, landed=then)
    await writes.behind(store, pending)
    if max_backlog < 0:
        assert pending.done() and answers == [PollWritten(True, [])], "waited, and followed up as it landed"
    else:
        assert not pending.done() and answers == [], "the runner did not wait for its write"
        await store.drain()  # no loop turn after the batch's: the follow-up ran as the answer came
        assert answers == [PollWritten(True, [])]
