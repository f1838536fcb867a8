"""The Graph tokens relay sends go only where its purpose needs them: the long-running actions it tracks
(a DriveItem copy, an upload from URL) and a GET of the DriveItem they made. Anything else is a 422 naming
the rule, and nothing reaches the host; an id a monitor reports cannot move the DriveItem request elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.simulator import Simulator
from tests.helpers import Api, Receiver, Trap

UPLOAD = {"@microsoft.graph.sourceUrl": "https://example.org/a.iso", "name": "a.iso", "file": {}}
ASYNC = {"Prefer": "respond-async"}
#: the rule a refused action's 422 names (relay/core/graph_paths.py ACTION_RULE)
ACTION_RULE = "an action is a POST of a DriveItem copy"


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    host = Trap()
    await host.start()
    yield host
    await host.stop()


@pytest.mark.parametrize(
    ("path", "body", "headers", "field", "rule"),
    [
        ("/v1.0/users", {"displayName": "Mallory", "accountEnabled": True}, None, "action.url", ACTION_RULE),
        ("/v1.0/me/messages/AAMk/copy", {"destinationId": "deleteditems"}, None, "action.url", ACTION_RULE),
        ("/v1.0/me/drive/items/01A/invite", {"recipients": [{"email": "m@evil.example"}]}, None, "action.url", None),
        ("/v1.0/sites/s1/lists/l1/items/01A/copy", None, None, "action.url", ACTION_RULE),
        ("/v1.0/me/drive/items/01A/../../../users/copy", None, None, "action.url", "'.' or '..'"),
        ("/v1.0/me/drive/items/%2e%2e/%2E%2E/%2e%2e/users/copy", None, None, "action.url", "'.' or '..'"),
        ("/v1.0/me/drive/items/01A%2F..%2F..%2Fusers/copy", None, None, "action.url", "'/' or '\\'"),
        ("/v1.0/me/drive/items/01A/copy/..", None, None, "action.url", "'.' or '..'"),
        ("/v1.0/me/drive/items/01A/children", {"name": "folder", "folder": {}}, ASYNC, "action.body", "sourceUrl"),
        ("/v1.0/me/drive/items/01A/children", {**UPLOAD, "folder": {}}, ASYNC, "action.body", "sourceUrl"),
        ("/v1.0/me/drive/items/01A/children", UPLOAD, None, "action.headers", "respond-async"),
        ("/v1.0/me/drive/items/01A/copy", {"parentReference": {"driveId": ".."}}, None, "action.body", "driveId"),
    ],
)
async def test_an_action_that_is_not_a_tracked_long_running_action_is_refused(
    api: Api,
    trap: Trap,
    receiver: Receiver,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str] | None,
    field: str,
    rule: str | None,
) -> None:
    action: dict[str, Any] = {"method": "POST", "url": trap.base_url + path, "body": body}
    if headers is not None:
        action["headers"] = headers
    request = {"action": action, "authorization": "Bearer app-only-token", "callbackUrl": receiver.url}
    status, problem, _ = await api.request("POST", "/v1/jobs", json=request)
    assert status == 422, problem
    messages = {error["field"]: error["message"] for error in problem["errors"]}
    assert field in messages, problem
    assert (rule or ACTION_RULE) in messages[field]
    assert trap.requests == [], "the token went to a request relay does not exist to make"


@pytest.mark.parametrize(
    "template",
    [
        "/v1.0/users/{resourceId}",
        "/v1.0/me/drive/items/{resourceId}/content",
        "/v1.0/me/drive/items/{resourceId}/permissions",
        "/v1.0/me/drive/items/x/../../../users/{resourceId}",
        "/v1.0/me/drive/%2e%2e/%2e%2e/users/items/{resourceId}",
        "/items/{resourceId}",
        "/v1.0/me/drive/items/{resourceId}/{resourceId}",
    ],
)
async def test_a_drive_item_url_that_is_not_a_drive_item_is_refused(
    api: Api, trap: Trap, receiver: Receiver, template: str
) -> None:
    request = {
        "monitorUrl": f"{trap.base_url}/monitor/1",
        "callbackUrl": receiver.url,
        "driveItemUrl": trap.base_url + template,
        "authorization": "Bearer app-only-token",
    }
    status, problem, _ = await api.request("POST", "/v1/jobs", json=request)
    assert status == 422, problem
    assert [error["field"] for error in problem["errors"]] == ["driveItemUrl"], problem


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 202, "body": {"status": "completed", "percentageComplete": 100.0, "resourceId": ".."}},
        {"status": 202, "body": {"status": "completed", "percentageComplete": 100.0, "resourceId": "."}},
        {"status": 202, "body": {"status": "completed", "percentageComplete": 100.0, "resourceId": "a/../../users"}},
        {"status": 202, "body": {"status": "completed", "percentageComplete": 100.0, "resourceId": "01\u001b[2J"}},
        {"status": 303, "headers": {"Location": "https://graph.microsoft.com/v1.0/drives/b!x/items/%2e%2e"}},
        {"status": 202, "body": {"status": "completed", "resourceLocation": "https://x/v1.0/drives/b!x/items/%2E"}},
    ],
)
async def test_an_id_a_monitor_reports_never_moves_the_drive_item_request(
    api: Api, simulator: Simulator, trap: Trap, receiver: Receiver, worker: Any, answer: dict[str, Any]
) -> None:
    op = simulator.create(script=[answer])
    job = await api.create(
        monitorUrl=op.monitor_url,
        callbackUrl=receiver.url,
        driveItemUrl=f"{trap.base_url}/v1.0/me/drive/items/{{resourceId}}",
        authorization="Bearer graph-token",
    )
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    done: Any = receiver.terminal(job["id"])
    assert done["type"] == "job.completed" and done["data"]["driveItem"] is None
    assert done["data"]["resolutionError"]["code"] == "invalidResourceId", done["data"]
    assert trap.requests == [], "the DriveItem request went to another path"
