"""Published monitor answers (tests/corpus, one file per case) replayed end to end.

Each case is a sequence of answers that Microsoft's monitors are documented or reported to have given
(see the case's ``source``). The simulator's ``script`` knob serves them, one per poll, repeating the
last; relay's API registers the job, a real arq worker polls and resolves, and the signed events reach
the real Receiver. The checks are the case's ``expect``: the terminal event and its fields, and the
progress events relay recorded (superseded ones included: they show what relay made of each answer).
How to add a case: CONTRIBUTING.md.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.core.monitor import Kind, classify
from relay.core.schema import EventType, Monitor
from relay.core.tracking import PollPolicy, plan_poll
from relay.simulator import Simulator
from relay.store.jobs import Store
from tests.helpers import Api, Receiver

TERMINAL = EventType.terminal_types()

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(CORPUS.glob("*.json"))
TERMINALS = tuple(sorted(TERMINAL))
FIDELITY = ("as published", "reconstructed from text")


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    return case


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # a stretch of bare 5xx or unknown status words ends the job after half a second, not an hour: below what
    # RELAY_POLL_MAX_ERROR_TIME accepts (1 s), so an unvalidated copy rather than settings.replace
    # the monitor's Retry-After is honoured on every answer; capped at half a second, a published "Retry-After: 30"
    # slows its case down by that much instead of half a minute
    copy = dataclasses.replace(settings)
    object.__setattr__(copy, "poll_max_error_time", 0.5)
    object.__setattr__(copy, "retry_after_cap", 0.5)
    return copy


def subset(expected: dict[str, Any], actual: Any) -> bool:
    return isinstance(actual, dict) and all(actual.get(k) == v for k, v in expected.items())


def in_order(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> bool:
    """Every expected dict matches a later actual one than the previous match (a subsequence, by subset)."""
    rest = iter(actual)
    return all(any(subset(want, got) for got in rest) for want in expected)


def test_the_corpus_has_cases() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_every_case_says_where_it_was_published_and_what_was_changed(path: Path) -> None:
    case = load(path)
    assert case["name"] and case["changed"], "say what the case is and what was changed (or 'nothing')"
    assert case["before"], "say what relay made of it before the fix (or 'the same')"
    source = case["source"]
    assert source["url"] and source["title"] and source["published"], "cite the source and quote what it published"
    assert case["fidelity"].startswith(FIDELITY) or any(f in case["fidelity"] for f in FIDELITY)
    assert case["answers"] and all(isinstance(a["status"], int) for a in case["answers"])
    assert case["expect"]["terminal"] in TERMINALS


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
async def test_published_answers_replay_to_the_expected_events(
    path: Path, api: Api, simulator: Simulator, receiver: Receiver, worker: Any, redis: Redis, settings: Settings
) -> None:
    case = load(path)
    expect = case["expect"]
    item_ids = [expect["resourceId"]] if expect.get("driveItem") else None
    op = simulator.create(script=case["answers"], item_ids=item_ids)
    job = await api.create(
        monitorUrl=op.monitor_url,
        callbackUrl=receiver.url,
        driveItemUrl=f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}",
        authorization="Bearer sim-token",
        metadata={"case": path.stem},
    )

    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=10)

    assert receiver.bad_signatures == 0
    done = receiver.terminal(job["id"])
    assert done is not None
    data = done["data"]
    assert done["type"] == expect["terminal"], data
    if "error" in expect:
        assert subset(expect["error"], data.get("error")), data.get("error")
    if "operation" in expect:
        assert data["operation"] == expect["operation"]
    if "percentageComplete" in expect:
        assert data["percentageComplete"] == expect["percentageComplete"]
    if "resourceId" in expect:
        assert data.get("resourceId") == expect["resourceId"]
    if "driveItem" in expect:
        item = data.get("driveItem")
        assert (item is not None and item.get("id") == expect["resourceId"]) if expect["driveItem"] else item is None
    if "resolutionError" in expect:
        assert subset(expect["resolutionError"], data.get("resolutionError")), data.get("resolutionError")
    # credentials went only with the DriveItem request, never to the monitor (the simulator refuses them there)
    assert all(header == "Bearer sim-token" for header in simulator.item_auth_headers)

    store = Store(redis, retention=settings.job_retention, job_timeout=settings.job_timeout)
    recorded = [e for e in await store.events(await store.event_ids(job["id"])) if e is not None]
    progress = [json.loads(e.body)["data"] for e in recorded if e.type == "job.progress"]
    assert in_order(expect.get("progress", []), progress), progress
    assert [e.type for e in recorded].count(expect["terminal"]) == 1 and recorded[-1].type == expect["terminal"]


def test_the_published_throttle_holds_the_next_poll_back_by_its_fractional_retry_after() -> None:
    """Graph's throttling guidance answers ``Retry-After: 2.128``: the next poll waits at least that (issue 27)."""
    answer = load(CORPUS / "graph-throttling-429-fractional-retry-after.json")["answers"][0]
    result = classify(answer["status"], answer["headers"], json.dumps(answer["body"]).encode())
    defaults = PollPolicy.of(Settings(poll_initial_interval=1.0))
    plan = plan_poll(result, Monitor.from_hash("m", {}), [], 1_000_000, defaults, random.Random(0))
    assert result.kind is Kind.RETRY and plan.delay >= 2.128
