"""relay starts the action itself: POST /v1/jobs with ``action`` against the simulator, as an app would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from relay.outbound.actions import Action, derived_item_url
from relay.simulator import Simulator
from tests.helpers import Api, Receiver

COPY_BODY = {"parentReference": {"path": "/drive/root:/Documents"}, "name": "Copy of LargeFolder1"}


def copy(sim: Simulator, receiver: Receiver, query: str = "duration=0.3", **extra: Any) -> dict[str, Any]:
    return {
        "action": {
            "method": "POST",
            "url": f"{sim.base_url}/v1.0/me/drive/items/01FOLDER/copy?{query}",
            "body": COPY_BODY,
        },
        "authorization": "Bearer sim-token",
        "callbackUrl": receiver.url,
        "metadata": {"started": "by relay"},
        **extra,
    }


async def test_an_async_copy_started_by_relay_is_tracked_to_its_drive_item(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    status, job, resp = await api.request("POST", "/v1/jobs", json=copy(simulator, receiver))
    assert status == 201, job
    assert resp.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["monitorHost"] == "127.0.0.1" and job["status"] == "notStarted"
    assert job["driveItemUrl"] == f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}", "derived from the action"
    (op,) = simulator.operations.values()
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    done = receiver.events(job["id"])[-1]
    assert done["type"] == "job.completed" and done["data"]["driveItem"]["id"] == op.resource_id
    assert simulator.item_auth_headers == ["Bearer sim-token"]


async def test_an_upload_from_url_started_by_relay_completes(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    body = {
        "action": {
            "url": f"{simulator.base_url}/v1.0/drives/b!drive/items/root/children?duration=0.3",
            "body": {"@microsoft.graph.sourceUrl": "https://example.org/big.iso", "name": "big.iso", "file": {}},
            "headers": {"Prefer": "respond-async"},
        },
        "authorization": "Bearer sim-token",
        "callbackUrl": receiver.url,
    }
    status, job, _ = await api.request("POST", "/v1/jobs", json=body)
    assert status == 201, job
    assert job["driveItemUrl"] == f"{simulator.base_url}/v1.0/drives/b!drive/items/{{resourceId}}"
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    done = receiver.events(job["id"])[-1]["data"]
    assert done["operation"] == "DownloadUrl" and done["driveItem"]["name"] == "big.iso"


async def test_a_synchronous_answer_makes_a_job_born_completed(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    status, job, _ = await api.request("POST", "/v1/jobs", json=copy(simulator, receiver, "answer=sync"))
    assert status == 201, job
    (op,) = simulator.operations.values()
    assert job["status"] == "completed" and job["phase"] == "ended" and job["sequence"] == 1
    assert job["driveItem"]["id"] == op.resource_id and job["resourceId"] == op.resource_id
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    assert [e["type"] for e in receiver.events(job["id"])] == ["job.completed"]
    assert receiver.events(job["id"])[0]["data"]["metadata"] == {"started": "by relay"}
    assert op.polls == 0 and simulator.item_requests == 0


async def test_graphs_refusal_is_passed_on_and_nothing_is_registered(
    api: Api, simulator: Simulator, receiver: Receiver
) -> None:
    status, problem, resp = await api.request("POST", "/v1/jobs", json=copy(simulator, receiver, "answer=conflict"))
    assert status == 409 and resp.content_type == "application/problem+json"
    assert problem["graphError"] == {"status": 409, "code": "nameAlreadyExists", "message": problem["detail"]}
    status, problem, _ = await api.request(
        "POST", "/v1/jobs", json=copy(simulator, receiver, authorization="Bearer wrong")
    )
    assert status == 422 and problem["graphError"]["status"] == 401, "Graph's 401 is not relay's own 401"
    listed, page, _ = await api.request("GET", "/v1/jobs")
    assert listed == 200 and page["jobs"] == []


async def test_an_idempotent_retry_does_not_start_a_second_copy(
    api: Api, simulator: Simulator, receiver: Receiver
) -> None:
    headers = {"Idempotency-Key": "copy-2026-11-28-0001"}
    simulator_latency = copy(simulator, receiver)
    answers = await asyncio.gather(
        *(api.request("POST", "/v1/jobs", json=simulator_latency, headers=headers) for _ in range(3))
    )
    statuses = sorted(status for status, _, _ in answers)
    assert statuses.count(201) == 1 and all(s in (200, 201, 409) for s in statuses), statuses
    status, again, _ = await api.request("POST", "/v1/jobs", json=simulator_latency, headers=headers)
    created = next(body for status, body, _ in answers if status == 201)
    assert status == 200 and again["id"] == created["id"]
    assert simulator.actions == 1, "a retry started a second copy"
    refused = await api.request(
        "POST", "/v1/jobs", json=copy(simulator, receiver, "answer=conflict"), headers={"Idempotency-Key": "k2"}
    )
    assert refused[0] == 409
    # a refused action holds nothing: the same key may try again
    retried = await api.request(
        "POST", "/v1/jobs", json=copy(simulator, receiver, "answer=conflict"), headers={"Idempotency-Key": "k2"}
    )
    assert retried[0] == 409 and retried[1]["title"] == "Graph refused the action"


@pytest.mark.parametrize(
    ("query", "url", "status", "field"),
    [
        ("answer=redirect", None, 502, None),
        ("", "https://evil.example/v1.0/me/drive/items/1/copy", 422, "action.url"),
        ("", "http://127.0.0.1:25/v1.0/me/drive/items/1/copy", 422, "action.url"),
    ],
)
async def test_redirecting_or_off_allowlist_actions_are_refused(
    api: Api, simulator: Simulator, receiver: Receiver, query: str, url: str | None, status: int, field: str | None
) -> None:
    body = copy(simulator, receiver, query)
    if url is not None:
        body["action"]["url"] = url
    answer, problem, _ = await api.request("POST", "/v1/jobs", json=body)
    assert answer == status, problem
    if field is not None:
        assert field in {error["field"] for error in problem["errors"]}
    assert simulator.operations == {}


async def test_an_action_needs_an_authorization_and_excludes_a_monitor_url(
    api: Api, simulator: Simulator, receiver: Receiver
) -> None:
    no_auth = copy(simulator, receiver)
    del no_auth["authorization"]
    both = copy(simulator, receiver, monitorUrl=f"{simulator.base_url}/monitor/x")
    bad_header = copy(simulator, receiver)
    bad_header["action"]["headers"] = {"Authorization": "Bearer other"}
    for body in (no_auth, both, bad_header):
        status, problem, _ = await api.request("POST", "/v1/jobs", json=body)
        assert status == 422, problem


def test_the_drive_item_url_is_derived_from_the_action() -> None:
    graph = "https://graph.microsoft.com"
    upload = {"@microsoft.graph.sourceUrl": "https://example.org/a.iso", "name": "a.iso", "file": {}}
    cases = {
        f"{graph}/v1.0/me/drive/items/01A/copy": f"{graph}/v1.0/me/drive/items/{{resourceId}}",
        f"{graph}/beta/drives/b!x/items/01A/copy?@microsoft.graph.conflictBehavior=rename": (
            f"{graph}/beta/drives/b!x/items/{{resourceId}}"
        ),
        f"{graph}/v1.0/sites/s1/drive/items/root/children": f"{graph}/v1.0/sites/s1/drive/items/{{resourceId}}",
        f"{graph}/v1.0/me/drive/root:/folder:/children": f"{graph}/v1.0/me/drive/items/{{resourceId}}",
    }
    for url, expected in cases.items():
        action = Action(url=url, body=upload, headers={"Prefer": "respond-async"}) if "children" in url else None
        assert derived_item_url(action or Action(url=url)) == expected, url
    elsewhere = Action(url=f"{graph}/v1.0/me/drive/items/01A/copy", body={"parentReference": {"driveId": "b!other"}})
    assert derived_item_url(elsewhere) == f"{graph}/v1.0/drives/b!other/items/{{resourceId}}"
