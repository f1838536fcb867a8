"""``Retry-After`` as Graph writes it (``2.128``) and as HTTP allows it (an HTTP-date), on every path that reads it:
the monitor poll, the DriveItem request, the action relay starts, and the callback. The parser itself:
tests/test_backoff.py."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from relay.config.settings import Settings
from relay.core.monitor import Kind, PollResult, classify
from relay.core.retry import RetryPolicy, resolution_retry
from relay.core.schema import Monitor
from relay.core.tracking import PollPolicy, plan_poll
from relay.simulator import Simulator
from tests.helpers import Api, Receiver

S = PollPolicy.of(Settings(poll_initial_interval=1.0, poll_max_interval=60.0, job_timeout=100.0))
NOW_MS = 1_000_000  # relay's clock in these plans: 1970, far from the machine's
NOW = 1_000_000.0  # a worker's clock (Unix seconds) for a DriveItem answer's Retry-After
COMPLETED = {"percentageComplete": 100.0, "resourceId": "01R", "status": "completed"}
#: Graph's throttling guidance (concepts/throttling.md at 28dd02d3)
THROTTLED_BODY = {
    "error": {
        "code": "TooManyRequests",
        "innerError": {"code": "429", "date": "2020-08-18T12:51:51", "message": "Please retry after", "status": "429"},
        "message": "Please retry again later.",
    }
}


def delay_after(retry_after: str, kind: Kind = Kind.RETRY, status: int = 429) -> float:
    result = PollResult(kind, http_status=status, retry_after=retry_after, status="inProgress", percentage=5.0)
    return plan_poll(result, Monitor.from_hash("m", {}), [], NOW_MS, S, random.Random(0)).delay


def http_date(unix_seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(unix_seconds, UTC), usegmt=True)


# -- the monitor ------------------------------------------------------------------------------------


def test_a_throttled_monitor_waits_the_fraction_graph_asks_for() -> None:
    result = classify(429, {"Retry-After": "2.128"}, json.dumps(THROTTLED_BODY).encode())
    assert result.kind is Kind.RETRY and result.retry_after == "2.128"
    # the backoff alone would poll again within 0.5-1 s (the first step of 1 s, equal jitter)
    assert plan_poll(result, Monitor.from_hash("m", {}), [], NOW_MS, S, random.Random(0)).delay >= 2.128
    assert delay_after("7.5", Kind.PROGRESS, 200) >= 7.5  # a running operation's too


def test_a_monitor_s_http_date_counts_from_relay_s_clock() -> None:
    # relay's clock (Redis' TIME in the worker) says 1970: the date is 40 s after it, whatever the machine says
    assert delay_after(http_date(NOW_MS / 1000 + 40)) == 40.0


async def test_a_monitor_throttling_with_a_fraction_is_polled_again_only_after_it(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    throttled = {"status": 429, "headers": {"Retry-After": "0.8"}, "body": THROTTLED_BODY}
    op = simulator.create(script=[throttled, {"status": 202, "body": COMPLETED}], item_ids=["01R"])
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=10)
    first, second = op.polled_at[:2]
    assert second - first >= 0.8, second - first  # the test settings' backoff alone: 0.05 s


# -- the DriveItem request --------------------------------------------------------------------------


def test_the_drive_item_retry_waits_at_least_what_graph_asks() -> None:
    policy = RetryPolicy.of(Settings())  # the cap: 3600 s
    assert resolution_retry(1, policy, 429, "2.128", NOW) == 2.128  # more than the first backoff step (2 s)
    assert resolution_retry(1, policy, 503, "1", NOW) == 2.0  # a floor: never sooner than the backoff
    assert resolution_retry(2, policy, 503, None, NOW) == 4.0
    assert resolution_retry(1, policy, 429, "999999", NOW) == 3600  # capped
    assert resolution_retry(1, policy, 429, http_date(NOW + 30), NOW) == 30.0  # dates: the given clock


async def test_a_throttled_drive_item_request_is_retried_after_graph_s_retry_after(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=0.1, item_throttled=1, retry_after="2.6")
    job = await api.create(
        monitorUrl=op.monitor_url,
        callbackUrl=receiver.url,
        driveItemUrl=f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}",
        authorization="Bearer sim-token",
    )
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=15)
    done = receiver.terminal(job["id"])
    assert done is not None and done["data"]["driveItem"]["id"] == op.resource_id
    first, second = op.item_requested_at[:2]
    assert second - first >= 2.55, second - first  # 2 s without it (the first backoff step)


# -- the action relay starts ------------------------------------------------------------------------


def action(sim: Simulator, receiver: Receiver, query: str) -> dict[str, Any]:
    return {
        "action": {"url": f"{sim.base_url}/v1.0/me/drive/items/01A/copy?{query}", "body": {"name": "Copy"}},
        "authorization": "Bearer sim-token",
        "callbackUrl": receiver.url,
    }


async def test_a_throttled_action_is_refused_with_graph_s_wait_rounded_up(
    api: Api, simulator: Simulator, receiver: Receiver
) -> None:
    status, problem, resp = await api.request("POST", "/v1/jobs", json=action(simulator, receiver, "answer=throttled"))
    assert status == 429 and resp.headers["Retry-After"] == "3"  # 2.128 s, as HTTP's whole seconds
    graph = problem["graphError"]
    assert (graph["status"], graph["code"], graph["retryAfter"]) == (429, "TooManyRequests", 2.128)
    assert graph["message"] == "Please retry again later." and graph["innerError"]["status"] == "429"
    status, problem, resp = await api.request(
        "POST", "/v1/jobs", json=action(simulator, receiver, "answer=unavailable&retryAfter=5")
    )
    assert status == 503 and resp.headers["Retry-After"] == "5" and problem["graphError"]["status"] == 503
    assert simulator.operations == {}


# -- the callback -----------------------------------------------------------------------------------


async def test_a_callback_s_fractional_retry_after_is_honoured(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    receiver.responder = lambda request, n: (
        web.Response(status=429, headers={"Retry-After": "0.6"}) if n == 1 else web.Response(status=204)
    )
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    await receiver.wait_for(lambda: len(receiver.received) >= 2)
    gap = receiver.received[1].at - receiver.received[0].at
    assert gap >= 0.6, gap  # the schedule alone would retry after about 0.1 s
