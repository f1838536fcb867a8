"""The simulator speaks as real monitors do: each of its answers held against the published answer of the same
kind in tests/corpus (field names and casing, operation words, error shapes, throttling); and it takes Graph's
own ``@microsoft.graph.conflictBehavior`` as Graph does."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from relay.core.monitor import classify
from relay.simulator import SimOperation, Simulator
from tests.helpers import Api, Receiver

AUTH = {"Authorization": "Bearer sim-token"}
CORPUS = Path(__file__).parent / "corpus"
PARENT = {"driveId": "b!drive", "id": "01DEST"}


def published(case: str, answer: int) -> dict[str, Any]:
    """An answer of a corpus case: {status, headers, body}."""
    found: dict[str, Any] = json.loads((CORPUS / case).read_text())["answers"][answer]
    return found


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(seed=3)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def answer(http: aiohttp.ClientSession, op: SimOperation, *, age: float = 0.0) -> tuple[int, Any, Any]:
    """The monitor's answer (status, headers, JSON body) when the operation is ``age`` seconds old."""
    op.created = time.monotonic() - age
    async with http.get(op.monitor_url, allow_redirects=False) as resp:
        text = await resp.text()
        return resp.status, resp.headers, json.loads(text) if text else None


def same_form(ours: Any, theirs: Any) -> None:
    """The same field names, spelt the same (recursively, for objects), and relay reads both alike."""
    assert isinstance(ours, dict) and isinstance(theirs, dict)
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    for key, value in theirs.items():
        if isinstance(value, dict):
            same_form(ours[key], value)


def read_alike(status: int, headers: Any, body: Any, case: dict[str, Any]) -> None:
    ours = classify(status, dict(headers), json.dumps(body).encode() if body is not None else None)
    theirs = classify(case["status"], case.get("headers", {}), json.dumps(case.get("body")).encode())
    assert (ours.kind, ours.status) == (theirs.kind, theirs.status)
    assert theirs.error_code is None or ours.error_code == theirs.error_code


# -- AsyncJobStatus (OneDrive /monitor/...) -----------------------------------------------------------


async def test_a_onedrive_copy_answers_as_the_onedrive_documents_show(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    op = sim.create(duration=10)
    running = published("onedrive-docs-copy-303.json", 0)
    status, headers, body = await answer(http, op, age=3)
    assert status == running["status"] and body["operation"] == "ItemCopy"
    same_form(body, running["body"])
    read_alike(status, headers, body, running)
    done = published("onedrive-docs-copy-303.json", 1)
    status, headers, body = await answer(http, op, age=11)
    assert status == 303 and "Location" in headers
    same_form(body, done["body"])
    read_alike(status, headers, body, done)


async def test_the_beta_documents_completion_form(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=1, completion="beta202")
    done = published("graph-beta-docs-copy-202-completed.json", 1)
    status, headers, body = await answer(http, op, age=2)
    assert status == done["status"]
    same_form(body, done["body"])
    read_alike(status, headers, body, done)


async def test_an_upload_from_url_says_download_url_as_real_monitors_do(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    url = f"{sim.base_url}/v1.0/me/drive/items/root/children?duration=10"
    body = {"@microsoft.graph.sourceUrl": "https://example.org/a.iso", "name": "a.iso", "file": {}}
    async with http.post(url, json=body, headers={**AUTH, "Prefer": "respond-async"}) as resp:
        assert resp.status == 202
    (op,) = sim.operations.values()
    real = published("issue63-upload-url-404-after-tombstone.json", 0)
    status, headers, ours = await answer(http, op, age=5)
    assert ours["operation"] == real["body"]["operation"] == "DownloadUrl"
    same_form(ours, real["body"])
    read_alike(status, headers, ours, real)


async def test_a_onedrive_failure_carries_its_reason_as_personal_monitors_do(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    op = sim.create(duration=1, outcome="failed", status_description="Completed 0/0 files; 0/9314 bytes")
    real = published("issue666-failed-with-progress-text.json", 0)
    status, headers, body = await answer(http, op, age=2)
    # issue 666's fields, and errorCode (OneDrive/onedrive-api-docs #1419: "the JSON will have another field
    # called errorCode" when a copy fails)
    assert set(body) == set(real["body"]) | {"errorCode"}
    read_alike(status, headers, body, real)


# -- v2.1 operations (SharePoint, OneDrive for Business) ------------------------------------------


async def test_a_sharepoint_copy_completes_as_graph_beta_example_2(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=1, monitor_style="sharepoint", completion="beta200")
    real = published("graph-beta-copy-example2-v21-completed.json", 0)
    status, headers, body = await answer(http, op, age=2)
    same_form(body, real["body"])
    assert body["percentComplete"] == body["percentageComplete"] == 100 and body["resourceId"] == op.resource_id
    read_alike(status, headers, body, real)
    status, _, running = await answer(http, op, age=0.5)
    assert status == 200 and running["status"] == "inProgress" and "operation" not in running


async def test_a_sharepoint_failure_is_an_error_object_as_graph_beta_example_3(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    op = sim.create(
        duration=1, monitor_style="sharepoint", outcome="failed", error_code="nameAlreadyExists", status_description="x"
    )
    real = published("graph-beta-copy-example3-failed-nameAlreadyExists.json", 0)
    status, headers, body = await answer(http, op, age=2)
    assert set(real["body"]) <= set(body) and set(body["error"]) == set(real["body"]["error"])
    read_alike(status, headers, body, real)


async def test_a_sharepoint_name_conflict_fails_as_graph_beta_example_5(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    op = sim.create(duration=1, monitor_style="sharepoint", outcome="failed", name_conflict=True)
    real = published("graph-beta-copy-example5-details-without-code.json", 0)
    status, headers, body = await answer(http, op, age=2)
    same_form(body, real["body"])
    assert all(set(d) <= {"code", "message", "target"} for d in body["error"]["details"])
    read_alike(status, headers, body, real)


# -- throttling ------------------------------------------------------------------------------------


async def test_throttling_answers_as_graph_s_throttling_guidance(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=60, rate_429=1.0)
    real = published("graph-throttling-429-fractional-retry-after.json", 0)
    status, headers, body = await answer(http, op)
    assert status == 429 and headers["Retry-After"] == real["headers"]["Retry-After"] == "2.128"
    same_form(body, real["body"])
    read_alike(status, headers, body, real)


# -- @microsoft.graph.conflictBehavior ---------------------------------------------------------------


async def copy(
    sim: Simulator, http: aiohttp.ClientSession, query: str, name: str = "Copy of LargeFolder1", *, raw: bool = False
) -> tuple[int, dict[str, Any] | None]:
    url = f"{sim.base_url}/v1.0/me/drive/items/01SRC/copy?duration=0.5&{query}"
    target = URL(url, encoded=True) if raw else url
    async with http.post(target, json={"parentReference": PARENT, "name": name}, headers=AUTH) as resp:
        return resp.status, await resp.json() if resp.content_type == "application/json" else None


@pytest.mark.parametrize("spelling", ["@microsoft.graph.conflictBehavior", "%40microsoft.graph.conflictBehavior"])
async def test_fail_refuses_a_name_already_taken_with_409(
    sim: Simulator, http: aiohttp.ClientSession, spelling: str
) -> None:
    assert (await copy(sim, http, f"{spelling}=fail", raw=True))[0] == 202
    status, body = await copy(sim, http, f"{spelling}=fail", raw=True)
    assert status == 409 and body is not None and body["error"]["code"] == "nameAlreadyExists"
    assert (await copy(sim, http, f"{spelling}=fail", "Another name", raw=True))[0] == 202
    assert len(sim.operations) == 2


async def test_rename_appends_the_lowest_integer_that_makes_the_name_unique(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    for name in ("Copy of LargeFolder1", "plan.docx"):
        for _ in range(3):
            assert (await copy(sim, http, "@microsoft.graph.conflictBehavior=rename", name))[0] == 202
    names = [op.options.name for op in sim.operations.values()]
    assert names == [
        "Copy of LargeFolder1",
        "Copy of LargeFolder1 1",
        "Copy of LargeFolder1 2",
        "plan.docx",
        "plan 1.docx",
        "plan 2.docx",
    ]


async def test_replace_replaces_a_file_and_fails_a_folder_on_its_monitor(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    for name in ("plan.docx", "Folder"):
        for _ in range(2):
            assert (await copy(sim, http, "@microsoft.graph.conflictBehavior=replace&monitorStyle=sharepoint", name))[
                0
            ] == 202
    file_again, folder_once, folder_again = list(sim.operations.values())[1:]
    assert file_again.options.name == "plan.docx" and file_again.options.outcome == "completed"
    assert folder_once.options.outcome == "completed"
    _, _, body = await answer(http, folder_again, age=1)
    assert body["status"] == "failed" and body["error"]["details"][0]["code"] == "nameAlreadyExists"
    assert "code" not in body["error"]  # beta example 5: "replace" is for files; a folder in conflict fails


async def test_without_the_parameter_names_are_not_compared_and_a_bad_value_is_refused(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    assert [(await copy(sim, http, ""))[0] for _ in range(2)] == [202, 202]
    status, body = await copy(sim, http, "@microsoft.graph.conflictBehavior=overwrite")
    assert status == 400 and body is not None and "@microsoft.graph.conflictBehavior" in body["error"]["message"]


async def test_an_upload_takes_the_parameter_in_its_body(sim: Simulator, http: aiohttp.ClientSession) -> None:
    url = f"{sim.base_url}/v1.0/me/drive/items/root/children"
    body = {
        "@microsoft.graph.sourceUrl": "https://e.org/a",
        "name": "a.bin",
        "@microsoft.graph.conflictBehavior": "fail",
    }
    statuses = []
    for _ in range(2):
        async with http.post(url, json=body, headers={**AUTH, "Prefer": "respond-async"}) as resp:
            statuses.append(resp.status)
    assert statuses == [202, 409]


async def test_relay_passes_graph_s_conflict_on_as_a_409_problem(
    api: Api, simulator: Simulator, receiver: Receiver
) -> None:
    action = {
        "url": f"{simulator.base_url}/v1.0/me/drive/items/01A/copy?@microsoft.graph.conflictBehavior=fail",
        "body": {"parentReference": PARENT, "name": "Copy of LargeFolder1"},
    }
    job = {"action": action, "authorization": "Bearer sim-token", "callbackUrl": receiver.url}
    assert (await api.request("POST", "/v1/jobs", json=job))[0] == 201
    status, problem, _ = await api.request("POST", "/v1/jobs", json=job)
    assert status == 409 and problem["graphError"]["code"] == "nameAlreadyExists"
