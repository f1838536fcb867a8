"""The Graph long-running-action simulator, driven over real HTTP like Graph's own clients would."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from relay.simulator import SimOperation, SimOptions, Simulator, run_simulator

TOKEN = "sim-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RESOURCE_ID = re.compile(r"^01[A-Z0-9]{32}$")
OP_ID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$")
COPY_BODY = {"parentReference": {"path": "/drive/root:/Documents"}, "name": "Copy of LargeFolder1"}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(seed=7)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def poll(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    """One GET without following redirects: (status, headers, body as JSON, else as text, else None)."""
    async with http.get(url, allow_redirects=False, **kwargs) as resp:
        text = await resp.text()
        body: Any = None
        if text and resp.content_type == "application/json":
            body = await resp.json()
        elif text:
            body = text
        return resp.status, dict(resp.headers), body


def age(op: SimOperation, seconds: float) -> None:
    """Pretend the operation was created ``seconds`` ago."""
    op.created = time.monotonic() - seconds


# -- starting actions ----------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "Bearer wrong"])
async def test_copy_requires_the_bearer_token(sim: Simulator, http: aiohttp.ClientSession, token: str | None) -> None:
    headers = {"Authorization": token} if token else {}
    async with http.post(f"{sim.base_url}/v1.0/me/drive/items/01SRC/copy", json=COPY_BODY, headers=headers) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/json"
        assert (await resp.json())["error"]["code"] == "InvalidAuthenticationToken"
    assert sim.operations == {}


@pytest.mark.parametrize(
    "path",
    ["/v1.0/me/drive/items/01SRC/copy", "/beta/me/drive/items/01SRC/copy", "/v1.0/drives/b!abc/items/01SRC/copy"],
)
async def test_copy_answers_202_with_a_monitor_location(sim: Simulator, http: aiohttp.ClientSession, path: str) -> None:
    async with http.post(sim.base_url + path, json=COPY_BODY, headers=AUTH) as resp:
        assert resp.status == 202
        assert await resp.read() == b""
        location = resp.headers["Location"]
    op_id = location.rsplit("/", 1)[1]
    assert location == f"{sim.base_url}/monitor/{op_id}"
    assert OP_ID.match(op_id)
    op = sim.operations[op_id]
    assert op.monitor_url == location
    assert RESOURCE_ID.match(op.resource_id)
    assert op.options.operation == "ItemCopy" and op.options.name == "Copy of LargeFolder1"
    assert op.drive_item()["parentReference"]["path"] == "/drive/root:/Documents"


async def test_copy_takes_knobs_from_the_query(sim: Simulator, http: aiohttp.ClientSession) -> None:
    url = f"{sim.base_url}/v1.0/me/drive/items/01SRC/copy?duration=2&completion=beta202&always200=true&goneAfter=5"
    async with http.post(url, headers=AUTH) as resp:  # no body at all is fine
        assert resp.status == 202
        op = sim.operations[resp.headers["Location"].rsplit("/", 1)[1]]
    assert op.options.duration == 2.0 and op.options.completion == "beta202"
    assert op.options.always200 is True and op.options.gone_after == 5.0

    async with http.post(f"{sim.base_url}/v1.0/me/drive/items/01SRC/copy?completion=bogus", headers=AUTH) as resp:
        assert resp.status == 400
        assert "completion" in (await resp.json())["error"]["message"]
    async with http.post(f"{sim.base_url}/v1.0/me/drive/items/01SRC/copy?nope=1", headers=AUTH) as resp:
        assert resp.status == 400
    async with http.post(f"{sim.base_url}/v1.0/me/drive/items/01SRC/copy", data=b"{not json", headers=AUTH) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalidRequest"


async def test_upload_from_url_needs_respond_async(sim: Simulator, http: aiohttp.ClientSession) -> None:
    url = f"{sim.base_url}/v1.0/me/drive/items/root/children?duration=0.2"
    body = {"@microsoft.graph.sourceUrl": "https://example.org/big.iso", "name": "big.iso", "file": {}}
    async with http.post(url, json=body, headers=AUTH) as resp:
        assert resp.status == 400
    async with http.post(url, json=body) as resp:
        assert resp.status == 401
    async with http.post(url, json=body, headers={**AUTH, "Prefer": "respond-async"}) as resp:
        assert resp.status == 202
        location = resp.headers["Location"]
    op = sim.operations[location.rsplit("/", 1)[1]]
    # the AsyncJobStatus resource and real monitors (OneDrive/onedrive-api-docs #63, #306) say DownloadUrl
    assert op.options.operation == "DownloadUrl" and op.options.name == "big.iso"
    status, _, status_body = await poll(http, location)
    assert status == 202 and status_body["operation"] == "DownloadUrl"
    age(op, 1)
    async with http.get(f"{sim.base_url}/v1.0/me/drive/items/{op.resource_id}", headers=AUTH) as resp:
        item = await resp.json()
    assert item["name"] == "big.iso" and "file" in item and "folder" not in item


# -- progress --------------------------------------------------------------------------------------


async def test_progress_rises_then_completes(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=0.4)
    seen: list[float] = []
    while True:
        status, headers, body = await poll(http, op.monitor_url)
        if status != 202:
            break
        assert headers["Content-Type"].startswith("application/json")
        assert body["operation"] == "ItemCopy" and body["status"] == "inProgress"
        assert body["percentageComplete"] == round(body["percentageComplete"], 1) < 100
        seen.append(body["percentageComplete"])
        await asyncio.sleep(0.05)
    assert status == 303
    assert len(seen) >= 3 and seen == sorted(seen) and seen[-1] > seen[0]
    assert op.polls == len(seen) + 1 == sim.total_polls


async def test_not_started_then_in_progress(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=10, not_started_for=5)
    _, _, body = await poll(http, op.monitor_url)
    assert body["status"] == "notStarted" and body["percentageComplete"] == 0.0
    age(op, 6)
    _, _, body = await poll(http, op.monitor_url)
    assert body["status"] == "inProgress" and 59 <= body["percentageComplete"] <= 61


async def test_stuck_progress_stays_at_zero_until_done(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=10, stuck=True, completion="beta202")
    age(op, 9)
    status, _, body = await poll(http, op.monitor_url)
    assert (status, body["status"], body["percentageComplete"]) == (202, "inProgress", 0.0)
    age(op, 10)
    _, _, body = await poll(http, op.monitor_url)
    assert body["status"] == "completed"


async def test_always200_answers_200_while_running(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=10, always200=True)
    status, _, body = await poll(http, op.monitor_url)
    assert status == 200 and body["status"] == "inProgress"


# -- completion forms ------------------------------------------------------------------------------


async def test_completion_303_with_body_and_location(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=0.2)
    age(op, 0.2)
    status, headers, body = await poll(http, op.monitor_url)
    assert status == 303
    assert headers["Location"] == f"{sim.base_url}/v1.0/me/drive/items/{op.resource_id}"
    assert headers["Content-Type"].startswith("application/json")
    assert body == {"percentageComplete": 100.0, "resourceId": op.resource_id, "status": "completed"}


async def test_completion_303_bare(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=0.2, completion="303-bare")
    age(op, 1)
    status, headers, body = await poll(http, op.monitor_url)
    assert status == 303 and body is None
    assert headers["Location"].endswith(f"/v1.0/me/drive/items/{op.resource_id}")


@pytest.mark.parametrize(("completion", "code"), [("beta202", 202), ("beta200", 200)])
async def test_completion_beta_forms(sim: Simulator, http: aiohttp.ClientSession, completion: str, code: int) -> None:
    op = sim.create(duration=0.2, completion=completion)
    age(op, 1)
    status, headers, body = await poll(http, op.monitor_url)
    assert status == code and "Location" not in headers
    assert body["status"] == "completed" and body["percentageComplete"] == 100.0
    assert body["resourceId"] == op.resource_id


async def test_completion_item200_is_the_drive_item_itself(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=0.2, completion="item200", always200=True)
    age(op, 1)
    status, _, body = await poll(http, op.monitor_url)
    assert status == 200 and "status" not in body
    assert body["id"] == op.resource_id and body["name"] == "Copy of LargeFolder1"
    assert {"size", "folder", "parentReference", "createdDateTime", "lastModifiedDateTime", "webUrl"} <= set(body)
    assert body["createdDateTime"].endswith("Z")


@pytest.mark.parametrize("outcome", ["failed", "deleteFailed", "cancelled"])
async def test_failed_outcomes_carry_error_code(sim: Simulator, http: aiohttp.ClientSession, outcome: str) -> None:
    op = sim.create(duration=0.2, outcome=outcome, error_code="AccessDenied_Copy", status_description="nope")
    age(op, 1)
    status, _, body = await poll(http, op.monitor_url)
    assert status == 202
    assert body["status"] == outcome and body["operation"] == "ItemCopy"
    assert body["errorCode"] == "AccessDenied_Copy" and body["statusDescription"] == "nope"
    assert isinstance(body["percentageComplete"], float)
    async with http.get(f"{sim.base_url}/v1.0/me/drive/items/{op.resource_id}", headers=AUTH) as resp:
        assert resp.status == 404  # a failed copy produced no item


# -- monitors going away ---------------------------------------------------------------------------


async def test_monitor_gone_after_completion(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=0.2, gone_after=0.3, completion="beta202")
    age(op, 0.3)
    status, _, body = await poll(http, op.monitor_url)
    assert status == 202 and body["status"] == "completed"
    age(op, 0.5)
    status, _, body = await poll(http, op.monitor_url)
    assert status == 404 and body["error"]["code"] == "itemNotFound"


async def test_delete_makes_the_monitor_404(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=60)
    assert (await poll(http, op.monitor_url))[0] == 202
    async with http.delete(f"{sim.base_url}/sim/operations/{op.id}") as resp:
        assert resp.status == 204
    status, _, body = await poll(http, op.monitor_url)
    assert status == 404 and body["error"]["code"] == "itemNotFound"
    async with http.get(f"{sim.base_url}/sim/operations/{op.id}") as resp:
        info = await resp.json()
    assert info["deleted"] is True and info["polls"] == 2
    async with http.delete(f"{sim.base_url}/sim/operations/NOPE") as resp:
        assert resp.status == 404


async def test_unknown_monitor_is_404(sim: Simulator, http: aiohttp.ClientSession) -> None:
    status, _, body = await poll(http, f"{sim.base_url}/monitor/4A3407B5-88FC-4504-8B21-0AABD3412717")
    assert status == 404 and body["error"]["code"] == "itemNotFound"


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["1", "Wed, 21 Oct 2015 07:28:00 GMT", None])
async def test_throttled_polls_get_429(sim: Simulator, http: aiohttp.ClientSession, retry_after: str | None) -> None:
    op = sim.create(duration=60, rate_429=1.0, retry_after=retry_after)
    status, headers, body = await poll(http, op.monitor_url)
    # Graph's throttling guidance: TooManyRequests, with an innerError
    assert status == 429 and body["error"]["code"] == "TooManyRequests"
    assert body["error"]["innerError"]["status"] == "429"
    assert headers.get("Retry-After") == retry_after


async def test_503_with_retry_after(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=60, rate_503=1.0, retry_after="2")
    status, headers, _ = await poll(http, op.monitor_url)
    assert status == 503 and headers["Retry-After"] == "2"


async def test_500_plain_text_or_with_a_status_body(sim: Simulator, http: aiohttp.ClientSession) -> None:
    plain = sim.create(duration=60, rate_500=1.0)
    status, headers, body = await poll(http, plain.monitor_url)
    assert status == 500 and headers["Content-Type"].startswith("text/plain") and isinstance(body, str)

    with_status = sim.create(duration=10, rate_500=1.0, status_on_500=True)
    age(with_status, 5)
    status, _, body = await poll(http, with_status.monitor_url)
    assert status == 500 and body["status"] == "inProgress" and 45 <= body["percentageComplete"] <= 55

    done = sim.create(duration=0.2, rate_500=1.0, status_on_500=True, completion="303-bare")
    age(done, 1)
    status, _, body = await poll(http, done.monitor_url)
    assert status == 500 and body["status"] == "completed" and body["resourceId"] == done.resource_id


async def test_fault_rates_are_drawn_per_poll_from_the_seed(http: aiohttp.ClientSession) -> None:
    async def statuses(seed: int) -> list[int]:
        simulator = Simulator(seed=seed)
        await simulator.start()
        try:
            op = simulator.create(duration=60, rate_429=0.3, rate_503=0.2, rate_500=0.2)
            return [(await poll(http, op.monitor_url))[0] for _ in range(40)]
        finally:
            await simulator.stop()

    first, again = await statuses(3), await statuses(3)
    assert first == again
    assert {429, 503, 500, 202} == set(first)


async def test_junk(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=0.2, junk=True)
    for _ in range(2):
        status, headers, body = await poll(http, op.monitor_url)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert body == "<html>junk</html>"


async def test_latency_delays_each_poll(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=60, latency=0.2)
    started = time.monotonic()
    assert (await poll(http, op.monitor_url))[0] == 202
    assert time.monotonic() - started >= 0.2


# -- monitor URL shapes and credentials ------------------------------------------------------------


async def test_sharepoint_monitor_needs_its_tempauth(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=60, monitor_style="sharepoint")
    url = URL(op.monitor_url)
    assert "monitor" not in url.path.split("/")
    assert re.fullmatch(rf"/_api/v2\.0/drives/[^/]+/operations/{op.id}", url.path)
    assert url.query["tempauth"] == op.tempauth and len(op.tempauth) >= 20

    status, _, body = await poll(http, op.monitor_url)
    assert status == 200 and body["status"] == "inProgress"  # v2.1 operations answer 200 while running
    status, _, _ = await poll(http, str(url.with_query(tempauth="wrong")))
    assert status == 401
    status, _, _ = await poll(http, str(url.with_query(None)))
    assert status == 401
    # the OneDrive-shaped path must not be a way around tempauth
    status, _, _ = await poll(http, f"{sim.base_url}/monitor/{op.id}")
    assert status == 404
    assert op.polls == 3


async def test_sharepoint_monitor_from_the_copy_endpoint(sim: Simulator, http: aiohttp.ClientSession) -> None:
    url = f"{sim.base_url}/v1.0/me/drive/items/01SRC/copy?monitorStyle=sharepoint&duration=0.2"
    async with http.post(url, json=COPY_BODY, headers=AUTH) as resp:
        location = resp.headers["Location"]
    assert "/_api/v2.0/drives/" in location and "tempauth=" in location
    assert (await poll(http, location))[0] == 200


@pytest.mark.parametrize("style", ["onedrive", "sharepoint"])
async def test_credentials_on_the_monitor_are_refused(sim: Simulator, http: aiohttp.ClientSession, style: str) -> None:
    op = sim.create(duration=60, monitor_style=style)
    status, _, body = await poll(http, op.monitor_url, headers=AUTH)
    assert status == 400
    assert body["error"] == {"code": "invalidRequest", "message": "monitor requests must not carry credentials"}
    assert op.polls == 1


# -- item endpoint ---------------------------------------------------------------------------------


async def test_item_endpoint_requires_the_token(sim: Simulator, http: aiohttp.ClientSession) -> None:
    op = sim.create(duration=0.2)
    item_url = f"{sim.base_url}/v1.0/me/drive/items/{op.resource_id}"
    async with http.get(item_url, headers=AUTH) as resp:
        assert resp.status == 404  # not copied yet
    age(op, 1)
    async with http.get(item_url) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "InvalidAuthenticationToken"
    async with http.get(item_url, headers={"Authorization": "Bearer expired"}) as resp:
        assert resp.status == 401
    for path in (
        f"/v1.0/me/drive/items/{op.resource_id}",
        f"/beta/me/drive/items/{op.resource_id}",
        f"/v1.0/drives/b!abc/items/{op.resource_id}",
    ):
        async with http.get(sim.base_url + path, headers=AUTH) as resp:
            assert resp.status == 200
            item = await resp.json()
        assert item["id"] == op.resource_id and item["folder"]["childCount"] >= 0
    async with http.get(f"{sim.base_url}/v1.0/me/drive/items/01UNKNOWN", headers=AUTH) as resp:
        assert resp.status == 404
    assert sim.item_requests == 7
    assert sim.item_auth_headers == [AUTH["Authorization"], "", "Bearer expired"] + [AUTH["Authorization"]] * 4
    assert sim.total_polls == 0


# -- scripts ---------------------------------------------------------------------------------------


async def test_scripted_answers_then_the_last_repeats(sim: Simulator, http: aiohttp.ClientSession) -> None:
    done = {"status": "completed", "percentageComplete": 100.0, "resourceId": "01SCRIPTED"}
    op = sim.create(
        junk=True,  # the script overrides every other knob
        script=[
            {"status": 202, "body": {"operation": "ItemCopy", "status": "waiting", "percentageComplete": 5.0}},
            {"status": 500, "body": "oops"},
            {"status": 429, "body": None, "headers": {"Retry-After": "0"}},
            {"status": 200, "body": done},
        ],
    )
    answers = [await poll(http, op.monitor_url) for _ in range(6)]
    assert answers[0][0] == 202 and answers[0][2]["status"] == "waiting"
    assert answers[1][0] == 500 and answers[1][2] == "oops"
    assert answers[2][0] == 429 and answers[2][1]["Retry-After"] == "0" and answers[2][2] is None
    assert [a[0] for a in answers[3:]] == [200, 200, 200]
    assert all(a[2] == done for a in answers[3:])
    assert op.state() == (200, {}, done)
    # a resourceId a script hands out resolves on the item endpoint
    async with http.get(f"{sim.base_url}/v1.0/me/drive/items/01SCRIPTED", headers=AUTH) as resp:
        assert resp.status == 200 and (await resp.json())["id"] == "01SCRIPTED"


async def test_item_ids_resolve_an_item_named_only_in_a_location(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{sim.base_url}/sim/operations",
        json={
            "script": [{"status": 303, "headers": {"Location": "/v1.0/drives('me')/items('A!1')"}}],
            "itemIds": ["A!1", "{x})"],
        },
    ) as resp:
        assert resp.status == 201
    for item_id, quoted in (("A!1", "A%211"), ("{x})", "%7Bx%7D%29")):
        async with http.get(f"{sim.base_url}/v1.0/me/drive/items/{quoted}", headers=AUTH) as resp:
            assert resp.status == 200 and (await resp.json())["id"] == item_id
    async with http.get(f"{sim.base_url}/v1.0/me/drive/items/OTHER", headers=AUTH) as resp:
        assert resp.status == 404
    with pytest.raises(ValueError, match="itemIds"):
        SimOptions(item_ids=[""])


# -- control API and counters ----------------------------------------------------------------------


async def test_control_api_and_stats(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{sim.base_url}/sim/operations", json={"duration": 0.2, "completion": "beta200", "alwaysOk": 1}
    ) as resp:
        assert resp.status == 400  # unknown knob
    async with http.post(
        f"{sim.base_url}/sim/operations",
        json={"duration": 0.2, "completion": "beta200", "always200": True, "errorCode": "X", "gone_after": 9},
    ) as resp:
        assert resp.status == 201
        created = await resp.json()
    assert set(created) == {"id", "monitorUrl", "resourceId"}
    op = sim.operations[created["id"]]
    assert op.options.error_code == "X" and op.options.gone_after == 9.0 and op.options.always200
    assert created["monitorUrl"] == op.monitor_url and created["resourceId"] == op.resource_id

    other = sim.create(duration=60)
    for _ in range(3):
        await poll(http, op.monitor_url)
    await poll(http, other.monitor_url)

    async with http.get(f"{sim.base_url}/sim/operations/{op.id}") as resp:
        info = await resp.json()
    assert info["id"] == op.id and info["polls"] == 3 and info["options"]["completion"] == "beta200"
    async with http.get(f"{sim.base_url}/sim/operations/NOPE") as resp:
        assert resp.status == 404
    async with http.get(f"{sim.base_url}/sim/stats") as resp:
        stats = await resp.json()
    assert stats["operations"] == 2 and stats["polls"] == 4 == sim.total_polls


def test_options_from_mapping_and_validation() -> None:
    opts = SimOptions.from_mapping(
        {"duration": "0.5", "stuck": "yes", "goneAfter": "none", "retryAfter": "null", "status_on_500": "0"}
    )
    assert opts.duration == 0.5 and opts.stuck is True and opts.gone_after is None and opts.retry_after is None
    assert opts.status_on_500 is False
    assert SimOptions.from_mapping({"retryAfter": 3}).retry_after == "3"
    script = SimOptions.from_mapping({"script": '[{"status": 202, "body": {"status": "inProgress"}}]'}).script
    assert script == [{"status": 202, "body": {"status": "inProgress"}}]
    bad_knobs: list[dict[str, Any]] = [
        {"outcome": "exploded"},
        {"monitorStyle": "ftp"},
        {"duration": "-1"},
        {"duration": True},
        {"rate429": 2},
        {"junk": "maybe"},
        {"script": []},
    ]
    for bad in bad_knobs:
        with pytest.raises(ValueError, match=r"knob"):
            SimOptions.from_mapping(bad)
    assert SimOptions().to_json()["statusOn500"] is False


def test_create_applies_knobs_over_options() -> None:
    simulator = Simulator(seed=1)
    op = simulator.create(SimOptions(duration=3, completion="beta200"), completion="item200")
    assert op.options.duration == 3 and op.options.completion == "item200"
    assert op.monitor_url == f"/monitor/{op.id}"  # not started: URLs have no origin yet
    assert Simulator(seed=1).create().resource_id == Simulator(seed=1).create().resource_id


async def test_run_simulator_prints_where_it_listens(
    http: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    task = asyncio.create_task(run_simulator("127.0.0.1", 0, "tok"))
    try:
        for _ in range(100):
            await asyncio.sleep(0.02)
            line = capsys.readouterr().out
            if line:
                break
        match = re.fullmatch(r"simulator listening on (http://127\.0\.0\.1:\d+) \(token: tok\)\n", line)
        assert match, line
        async with http.post(
            f"{match[1]}/v1.0/me/drive/items/01SRC/copy", headers={"Authorization": "Bearer tok"}
        ) as resp:
            assert resp.status == 202
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
