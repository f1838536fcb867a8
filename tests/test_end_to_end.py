"""The whole path: API -> Redis -> worker polls the simulator -> resolves the item -> signed webhooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from relay.config.settings import Settings
from relay.core.schema import EventType
from relay.simulator import Simulator
from tests.helpers import Api, Receiver, eventually, with_settings

TERMINAL = EventType.terminal_types()


def job_fields(sim: Simulator, monitor_url: str, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "monitorUrl": monitor_url,
        "callbackUrl": receiver.url,
        "driveItemUrl": f"{sim.base_url}/v1.0/me/drive/items/{{resourceId}}",
        "authorization": "Bearer sim-token",
        "metadata": {"copy": "LargeFolder1"},
    }
    fields.update(extra)
    return fields


def assert_well_formed(events: list[dict[str, Any]], job_id: str) -> None:
    sequences = [e["data"]["sequence"] for e in events]
    # strictly increasing; gaps are progress events superseded before they could be sent
    assert sequences == sorted(set(sequences)) and sequences[0] >= 1
    pcts = [e["data"]["percentageComplete"] for e in events]
    assert pcts == sorted(pcts), "percentageComplete went down"
    for event in events:
        assert event["data"]["jobId"] == job_id
        assert event["data"]["metadata"] == {"copy": "LargeFolder1"}
        assert event["timestamp"].endswith("Z")
    assert sum(e["type"] in TERMINAL for e in events) == 1
    assert events[-1]["type"] in TERMINAL


async def test_copy_completes_with_progress_and_resolved_drive_item(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=0.8, completion="303")
    job = await api.create(**job_fields(simulator, op.monitor_url, receiver))

    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)

    events = receiver.events(job["id"])
    assert_well_formed(events, job["id"])
    assert receiver.bad_signatures == 0 and len(receiver.verified) == len(receiver.received)
    progress = [e for e in events if e["type"] == "job.progress"]
    assert progress, "no progress event before completion"
    assert progress[0]["data"]["operation"] == "ItemCopy"
    done = events[-1]
    assert done["type"] == "job.completed"
    assert done["data"]["resourceId"] == op.resource_id
    assert done["data"]["driveItem"]["id"] == op.resource_id
    assert done["data"]["status"] == "completed"
    assert done["data"]["percentageComplete"] == 100.0
    assert "resolutionError" not in done["data"]
    assert simulator.item_auth_headers == ["Bearer sim-token"]

    status, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
    assert status == 200
    assert body["status"] == "completed" and body["driveItem"]["id"] == op.resource_id
    assert body["pollCount"] >= 2 and body["nextPollDateTime"] is None


async def test_graph_beta_202_completed_form(api: Api, simulator: Simulator, receiver: Receiver, worker: Any) -> None:
    op = simulator.create(duration=0.3, completion="beta202")
    job = await api.create(**job_fields(simulator, op.monitor_url, receiver))
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    done = receiver.terminal(job["id"])
    assert done is not None and done["type"] == "job.completed"
    assert done["data"]["driveItem"]["id"] == op.resource_id


async def test_303_without_body_takes_resource_id_from_location(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=0.2, completion="303-bare")
    job = await api.create(**job_fields(simulator, op.monitor_url, receiver))
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    done = receiver.terminal(job["id"])
    assert done is not None and done["data"]["resourceId"] == op.resource_id
    assert done["data"]["driveItem"]["id"] == op.resource_id


async def test_onedrive_for_business_200_with_item_body_completes_without_item_request(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=0.3, completion="item200", always200=True, monitor_style="sharepoint")
    fields = job_fields(simulator, op.monitor_url, receiver)
    del fields["driveItemUrl"], fields["authorization"]
    job = await api.create(**fields)
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    done = receiver.terminal(job["id"])
    assert done is not None and done["type"] == "job.completed"
    assert done["data"]["driveItem"]["id"] == op.resource_id
    assert simulator.item_requests == 0


async def test_failed_copy_carries_error_code_and_description(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=0.3, outcome="failed", error_code="AccessDenied_Copy", status_description="nope")
    job = await api.create(**job_fields(simulator, op.monitor_url, receiver))
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    events = receiver.events(job["id"])
    assert_well_formed(events, job["id"])
    failed = events[-1]
    assert failed["type"] == "job.failed" and failed["data"]["status"] == "failed"
    assert failed["data"]["error"] == {
        "code": "monitorFailed",
        "monitorStatus": "failed",
        "errorCode": "AccessDenied_Copy",
        "statusDescription": "nope",
        "message": "nope",
        "target": None,
        "httpStatus": 202,
    }


async def test_deleted_monitor_fails_the_job_as_gone(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=60)
    job = await api.create(**job_fields(simulator, op.monitor_url, receiver))
    await receiver.wait_for(lambda: len(receiver.events(job["id"])) >= 1)
    async with api.session.delete(f"{simulator.base_url}/sim/operations/{op.id}") as resp:
        assert resp.status in (200, 204)
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    failed = receiver.terminal(job["id"])
    assert failed is not None and failed["data"]["error"]["code"] == "monitorGone"


async def test_junk_answers_fail_the_job_as_invalid_monitor_response(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=60, junk=True)
    job = await api.create(**job_fields(simulator, op.monitor_url, receiver))
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    failed = receiver.terminal(job["id"])
    assert failed is not None and failed["data"]["error"]["code"] == "invalidMonitorResponse"
    assert op.polls == 3  # RELAY_POLL_MAX_INVALID in the test settings


async def test_throttling_and_server_errors_do_not_fail_the_job(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=1.0, rate_429=0.3, retry_after="0", rate_500=0.2, rate_503=0.1, status_on_500=True)
    job = await api.create(**job_fields(simulator, op.monitor_url, receiver))
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    done = receiver.terminal(job["id"])
    assert done is not None and done["type"] == "job.completed"
    assert_well_formed(receiver.events(job["id"]), job["id"])


async def test_without_an_authorization_wait_a_refused_item_request_completes_with_the_401(
    api: Api, simulator: Simulator, receiver: Receiver, settings: Settings, start_worker: Callable[..., Any]
) -> None:
    op = simulator.create(duration=0.2)
    job = await api.create(**job_fields(simulator, op.monitor_url, receiver, authorization="Bearer expired"))
    async with start_worker(with_settings(settings, authorization_wait=0)):
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    assert [e["type"] for e in receiver.events(job["id"])][-1:] == ["job.completed"]
    assert not any(e["type"] == "job.authorizationRequired" for e in receiver.events(job["id"]))
    done = receiver.terminal(job["id"])
    assert done is not None and done["type"] == "job.completed"
    assert done["data"]["driveItem"] is None
    assert done["data"]["resolutionError"]["code"] == "httpError"
    assert done["data"]["resolutionError"]["httpStatus"] == 401


async def test_jobs_on_the_same_monitor_share_one_poller(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=1.0)
    jobs = [await api.create(**job_fields(simulator, op.monitor_url, receiver)) for _ in range(5)]
    await receiver.wait_for(lambda: all(receiver.terminal(j["id"]) is not None for j in jobs))
    lone = simulator.create(duration=1.0)
    lone_job = await api.create(**job_fields(simulator, lone.monitor_url, receiver))
    await receiver.wait_for(lambda: receiver.terminal(lone_job["id"]) is not None)
    # five jobs cost no more polls than one job does (allowing for jitter)
    assert op.polls <= lone.polls * 2, (op.polls, lone.polls)
    for job in jobs:
        assert_well_formed(receiver.events(job["id"]), job["id"])


async def test_failed_delivery_is_retried_with_the_same_webhook_id(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    receiver.responder = lambda request, n: web.Response(status=500 if n <= 2 else 204)
    completed = {"status": "completed", "percentageComplete": 100.0, "resourceId": "01ABC"}
    op = simulator.create(script=[{"status": 200, "body": completed}])
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)

    async def done() -> bool:
        _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
        return any(d["outcome"] == "delivered" and d["type"] == "job.completed" for d in body["deliveries"])

    await eventually(done)
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1
    stamps = [r.headers["webhook-timestamp"] for r in receiver.received]
    assert all(s.isdigit() for s in stamps)
    assert receiver.terminal(job["id"])["data"]["resolutionError"]["code"] == "noDriveItemUrl"  # type: ignore[index]
    _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
    assert [d["status"] for d in body["deliveries"]] == [500, 500, 204]
    assert [d["attempt"] for d in body["deliveries"]] == [1, 2, 3]


async def test_transient_item_failure_is_retried_through_arq(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    calls: list[str] = []

    async def item(request: web.Request) -> web.Response:
        calls.append(request.headers.get("Authorization", ""))
        if len(calls) == 1:
            return web.Response(status=503)
        return web.json_response({"id": request.match_info["id"], "name": "Copy", "folder": {}})

    app = web.Application()
    app.router.add_get("/v1.0/me/drive/items/{id}", item)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        op = simulator.create(duration=0.1)
        job = await api.create(
            monitorUrl=op.monitor_url,
            callbackUrl=receiver.url,
            driveItemUrl=f"http://127.0.0.1:{runner.addresses[0][1]}/v1.0/me/drive/items/{{resourceId}}",
            authorization="Bearer item-token",
        )
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=20)
    finally:
        await runner.cleanup()
    done = receiver.terminal(job["id"])
    assert done is not None and done["data"]["driveItem"]["id"] == op.resource_id
    assert calls == ["Bearer item-token", "Bearer item-token"]


async def test_failed_and_cancelled_jobs_keep_their_poll_count_and_last_poll(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    failing = simulator.create(duration=0.3, outcome="failed")
    failed = await api.create(**job_fields(simulator, failing.monitor_url, receiver))
    running = simulator.create(duration=60)
    cancelled = await api.create(**job_fields(simulator, running.monitor_url, receiver))
    await receiver.wait_for(lambda: receiver.terminal(failed["id"]) is not None and running.polls >= 2)
    status, _, _ = await api.request("DELETE", f"/v1/jobs/{cancelled['id']}")
    assert status == 204
    for job, op in ((failed, failing), (cancelled, running)):
        status, view, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
        assert status == 200 and view["status"] in ("failed", "cancelled")
        assert 1 <= view["pollCount"] <= op.polls and view["lastPolledDateTime"] is not None, view


async def test_the_job_shows_the_monitors_own_words_from_its_last_answer(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    answer = {"status": "running", "percentageComplete": 0.1, "statusDescription": "Completed 3/9 files"}
    op = simulator.create(script=[{"status": 202, "body": answer}])
    job = await api.create(**job_fields(simulator, op.monitor_url, receiver))
    await receiver.wait_for(lambda: len(receiver.events(job["id"])) >= 1)
    _, shown, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
    assert shown["monitorStatus"] == "running" and shown["statusDescription"] == "Completed 3/9 files"
    assert shown["status"] == "inProgress" and shown["percentageComplete"] == 0.1
