"""Graph error objects in every documented shape, and what a job that ended says (docs/graph-forms.md).

The bodies are the ones Microsoft publishes (each test names its page); the checks go from one answer
(``classify``) through what a poll plans (``plan_poll``) to what the API shows and the callback gets.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from relay.api.schemas import JobError
from relay.config.settings import Settings
from relay.core.graph_error import MAX_DETAILS, graph_error
from relay.core.monitor import Kind, classify
from relay.core.schema import Job, Monitor
from relay.core.tracking import PollPolicy, plan_poll
from relay.simulator import Simulator
from tests.helpers import Api, Receiver

JSON = {"Content-Type": "application/json"}
S = PollPolicy.of(
    Settings(poll_initial_interval=1.0, poll_max_interval=60.0, job_timeout=100.0, max_invalid_responses=3)
)
NOW = 1_000_000

CORPUS = Path(__file__).parent / "corpus"


def published(case: str, answer: int = 0) -> dict[str, Any]:
    """An answer's body from a corpus case (tests/corpus: the source and the exact words are in the case)."""
    body: dict[str, Any] = json.loads((CORPUS / case).read_text())["answers"][answer]["body"]
    return body


#: Graph beta driveItem copy, example 5: an error with no code, its reason only in details
EXAMPLE_5 = published("graph-beta-copy-example5-details-without-code.json")
#: Graph's throttling guidance: the 429's body, innerError included
THROTTLED = published("graph-throttling-429-fractional-retry-after.json")


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def job(**fields: Any) -> Job:
    base = {"seq": "1", "status": "inProgress", "percentage": "10.0", "phase": "tracking", "created": str(NOW - 1000)}
    base.update({k: str(v) for k, v in fields.items()})
    return Job.from_hash("j1", base)


def ended(answer: Any, *, status: int = 200, monitor: dict[str, str] | None = None) -> tuple[dict[str, Any], Any]:
    """(the job.failed error, the job's stored changes) of one answer to a job tracking it."""
    result = classify(status, JSON, body(answer))
    plan = plan_poll(result, Monitor.from_hash("m", monitor or {}), [job()], NOW, S, random.Random(0))
    (op,) = plan.ops
    (event,) = op.events
    data = json.loads(event["body"])["data"]
    JobError.model_validate(data["error"])  # the OpenAPI document describes every field
    return data["error"], op.set


# -- one answer ------------------------------------------------------------------------------------


def test_an_error_without_a_code_takes_the_code_its_details_agree_on_and_keeps_them_all() -> None:
    result = classify(200, JSON, body(EXAMPLE_5))
    assert result.kind is Kind.FAILED
    assert (result.error_code, result.error_message) == (
        "nameAlreadyExists",
        "Errors occurred during copy/move operation.",
    )
    assert result.error is not None and result.error.details == EXAMPLE_5["error"]["details"]  # type: ignore[index]


def test_details_that_disagree_give_no_code_but_are_all_kept() -> None:
    error = graph_error({"error": {"details": [{"code": "nameAlreadyExists"}, {"code": "accessDenied"}]}})
    assert (
        error is not None
        and error.code is None
        and [d["code"] for d in error.details]
        == [
            "nameAlreadyExists",
            "accessDenied",
        ]
    )
    # codes compared as Graph's SDKs compare them: case-insensitively
    agreeing = graph_error({"error": {"details": [{"code": "NameAlreadyExists"}, {"code": "nameAlreadyExists"}]}})
    assert agreeing is not None and agreeing.code == "NameAlreadyExists"


def test_inner_error_is_kept_in_either_spelling_nested_and_bounded() -> None:
    throttled = graph_error(THROTTLED)
    assert throttled is not None and throttled.inner == THROTTLED["error"]["innerError"]
    # the OneDrive and OData documents spell it innererror, nesting more specific codes
    nested = graph_error({"error": {"code": "invalidRange", "innererror": {"code": "fragmentOverlap"}}})
    assert nested is not None and nested.inner == {"code": "fragmentOverlap"}
    huge = graph_error({"error": {"code": "x", "innerError": {f"k{i}": "v" * 5000 for i in range(100)}}})
    assert huge is not None and huge.inner is not None and len(json.dumps(huge.inner)) <= 2048
    deep: dict[str, Any] = {"code": "a"}
    for _ in range(10):
        deep = {"code": "a", "innererror": deep}
    kept = graph_error({"error": deep})
    assert kept is not None and "innererror" not in json.dumps(kept.inner)[300:]  # four levels, then cut
    nan = graph_error(json.loads('{"error": {"code": "x", "innerError": {"n": NaN}}}'))
    assert nan is not None and nan.inner == {"n": None}


def test_details_are_bounded_in_count_and_size() -> None:
    many = [
        {"code": "nameAlreadyExists", "message": "m" * 5000, "target": str(i), "extra": {"x": 1}} for i in range(70)
    ]
    error = graph_error({"error": {"message": "Errors occurred", "details": many}})
    assert error is not None and len(error.details) == MAX_DETAILS and error.details_omitted == 70 - MAX_DETAILS
    assert all(len(d["message"]) == 256 and set(d) == {"code", "message", "target"} for d in error.details)
    assert error.code == "nameAlreadyExists"


def test_an_empty_or_malformed_error_is_no_error() -> None:
    for doc in ({"error": {}}, {"error": "x"}, {"error": {"details": "x", "code": 5}}, {"status": "failed"}, [1]):
        assert graph_error(doc) is None, doc


def test_a_final_error_answer_may_name_its_code_only_in_details() -> None:
    answer = {
        "error": {"message": "Errors occurred during copy/move operation.", "details": [{"code": "accessDenied"}]}
    }
    result = classify(409, JSON, body(answer))
    assert (result.kind, result.error_code) == (Kind.FAILED, "accessDenied")


# -- what the job says when it ends --------------------------------------------------------------


def test_a_failed_copy_s_event_carries_code_message_and_every_detail() -> None:
    error, sets = ended(EXAMPLE_5)
    assert error["code"] == "monitorFailed" and error["errorCode"] == "nameAlreadyExists"
    assert error["message"] == "Errors occurred during copy/move operation." and error["httpStatus"] == 200
    assert len(error["details"]) == 4 and error["details"][3]["target"] == "01E4CGZM2XRHETBOUOYVA2OKZFMGGBQ6VU"
    assert sets.monitor_status == "failed"


def test_a_gone_monitor_s_error_keeps_its_inner_error() -> None:
    answer = {"error": {"code": "itemNotFound", "message": "gone", "innerError": {"request-id": "r1"}}}
    error, _ = ended(answer, status=404)
    assert error == {
        "code": "monitorGone",
        "httpStatus": 404,
        "errorCode": "itemNotFound",
        "message": "gone",
        "innerError": {"request-id": "r1"},
    }


def test_every_ending_keeps_the_status_word_the_monitor_last_said() -> None:
    for word in ("failed", "deleteFailed", "Canceled"):
        _, sets = ended({"status": word, "statusDescription": "why"})
        assert (sets.monitor_status, sets.status_description) == (word, "why")
    # the completion keeps the monitor's own word too (Graph's longRunningOperation says succeeded)
    result = classify(200, JSON, body({"status": "succeeded", "resourceLocation": "https://x/items/01R"}))
    plan = plan_poll(result, Monitor.from_hash("m", {}), [job()], NOW, S, random.Random(0))
    assert plan.ops[0].set.monitor_status == "succeeded"


def test_an_error_that_came_from_an_http_status_carries_it() -> None:
    result = classify(401, JSON, b'{"error": {"message": "tempauth expired"}}')
    assert result.kind is Kind.INVALID
    plan = plan_poll(result, Monitor.from_hash("m", {"invalid": "2"}), [job()], NOW, S, random.Random(0))
    data = json.loads(plan.ops[0].events[0]["body"])["data"]
    assert data["error"]["code"] == "invalidMonitorResponse" and data["error"]["httpStatus"] == 401


# -- end to end: the API and the callback ----------------------------------------------------------


async def test_a_failed_job_shows_the_monitor_s_last_word_and_the_whole_error(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    progress = {"status": 202, "body": {"operation": "ItemCopy", "percentageComplete": 40.0, "status": "inProgress"}}
    op = simulator.create(script=[progress, {"status": 200, "body": EXAMPLE_5}])
    job_ = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    await receiver.wait_for(lambda: receiver.terminal(job_["id"]) is not None, timeout=10)
    done = receiver.terminal(job_["id"])
    assert done is not None and done["type"] == "job.failed"
    assert done["data"]["error"]["errorCode"] == "nameAlreadyExists" and len(done["data"]["error"]["details"]) == 4
    status, view, _ = await api.request("GET", f"/v1/jobs/{job_['id']}")
    assert status == 200 and view["status"] == "failed"
    assert view["monitorStatus"] == "failed" == view["error"]["monitorStatus"]
    assert view["error"]["details"] == done["data"]["error"]["details"]


async def test_a_monitor_answering_401_ends_with_its_http_status(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any, redis: Redis
) -> None:
    op = simulator.create(script=[{"status": 401}])
    job_ = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    await receiver.wait_for(lambda: receiver.terminal(job_["id"]) is not None, timeout=10)
    done = receiver.terminal(job_["id"])
    assert done is not None and done["data"]["error"]["code"] == "invalidMonitorResponse"
    assert done["data"]["error"]["httpStatus"] == 401


async def test_graph_s_refusal_of_an_action_keeps_its_inner_error(
    api: Api, simulator: Simulator, receiver: Receiver
) -> None:
    action = {"url": f"{simulator.base_url}/v1.0/me/drive/items/01A/copy", "body": {"name": "Copy"}}
    job_ = {"action": action, "authorization": "Bearer expired", "callbackUrl": receiver.url}
    status, problem, _ = await api.request("POST", "/v1/jobs", json=job_)
    # Graph's 401 (InvalidAuthenticationToken, with innerError date and request-id), as relay's 422
    graph = problem["graphError"]
    assert status == 422 and (graph["status"], graph["code"]) == (401, "InvalidAuthenticationToken")
    assert set(graph["innerError"]) == {"date", "request-id"}
