"""What a failed delivery says (host, port and cause, never the URL's path or query), when the next attempt comes,
and redelivery: any event, the same webhook-id, attempt numbers that go on, the schedule started again."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from relay.config.settings import Settings
from relay.outbound.ssrf import address_allowed
from tests.helpers import Api, Receiver, eventually, free_port, running_api, with_settings

COMPLETED = {"status": "completed", "percentageComplete": 100.0, "resourceId": "01ABC"}


@pytest.fixture
async def tls_receiver(tmp_path: Path) -> AsyncIterator[str]:
    """An HTTPS receiver whose certificate no public CA signed: its URL."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)

    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}/hook"
    await runner.cleanup()


async def _first_attempt(api: Api, job_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def attempted() -> bool:
        _, body, _ = await api.request("GET", f"/v1/jobs/{job_id}/deliveries")
        found[:] = body["deliveries"]
        return bool(found)

    await eventually(attempted)
    return found[0]


async def test_a_failed_delivery_names_host_port_and_cause_never_the_path_or_query(
    api: Api, simulator: Any, receiver: Receiver, worker: Any, tls_receiver: str
) -> None:
    closed = free_port()
    receiver.responder = lambda request, n: web.Response(status=500)
    callbacks = {
        "refused": f"http://127.0.0.1:{closed}/hooks?token=s3cret",
        "http": receiver.url + "?token=s3cret",
        "dns": "http://relay-test.invalid:9000/hooks?token=s3cret",
        "tls": tls_receiver,
    }
    jobs = {}
    for cause, url in callbacks.items():
        op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
        jobs[cause] = await api.create(monitorUrl=op.monitor_url, callbackUrl=url)
    errors = {cause: (await _first_attempt(api, job["id"]))["error"] for cause, job in jobs.items()}
    receiver_port = receiver.url.split(":")[2].split("/")[0]
    tls_port = tls_receiver.split(":")[2].split("/")[0]
    assert errors == {
        "refused": f"refused: nothing accepts connections on 127.0.0.1:{closed}",
        "http": f"HTTP 500 Internal Server Error from 127.0.0.1:{receiver_port}",
        "dns": errors["dns"],  # the resolver's own words follow
        "tls": errors["tls"],
    }
    assert errors["dns"].startswith("DNS: relay-test.invalid could not be resolved (")
    assert errors["tls"].startswith(f"TLS: the certificate of 127.0.0.1:{tls_port} was not accepted (")
    assert "certificate" in errors["tls"].split("(", 1)[1]
    assert not [e for e in errors.values() if "s3cret" in e or "/hooks" in e]


async def test_a_name_that_resolves_to_loopback_is_refused_naming_the_setting(
    settings: Settings, redis: Any, simulator: Any, start_worker: Any
) -> None:
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 9)}
    except OSError:
        pytest.skip("this machine's host name does not resolve")
    if any(address_allowed(a) for a in addresses):
        pytest.skip("this machine's host name resolves to a public address")
    async with running_api(settings) as api, start_worker():
        op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
        job = await api.create(monitorUrl=op.monitor_url, callbackUrl=f"http://{name}:9000/hook")
        error = (await _first_attempt(api, job["id"]))["error"]
    assert error.startswith(f"blocked: {name} resolves only to loopback") and "RELAY_INTERNAL_HOSTS" in error


async def test_a_retrying_delivery_says_when_the_next_attempt_comes(
    api: Api, simulator: Any, receiver: Receiver, settings: Settings, start_worker: Any
) -> None:
    receiver.responder = lambda request, n: web.Response(status=503)
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    async with start_worker(with_settings(settings, delivery_schedule=(0, 300))):
        await _first_attempt(api, job["id"])

        async def acked() -> bool:
            _, view, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
            return bool(view["delivery"]["state"] == "retrying")

        await eventually(acked)
    _, view, _ = await api.request("GET", f"/v1/jobs/{job['id']}")
    delivery = view["delivery"]
    assert view["status"] == "completed" and delivery["type"] == "job.completed" and delivery["attempts"] == 1
    assert delivery["lastError"].startswith("HTTP 503 Service Unavailable from 127.0.0.1:")
    wait = _seconds_from_now(delivery["nextAttemptDateTime"])
    assert 230 < wait < 370, f"the schedule's 300 s ±20 %, not {wait}"
    _, deliveries, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
    assert deliveries["nextAttemptDateTime"] == delivery["nextAttemptDateTime"]


def _seconds_from_now(iso: str) -> float:
    return (dt.datetime.fromisoformat(iso.replace("Z", "+00:00")) - dt.datetime.now(dt.UTC)).total_seconds()


async def test_attempt_numbers_go_on_across_a_redelivery_and_the_schedule_starts_again(
    api: Api, simulator: Any, receiver: Receiver, worker: Any
) -> None:
    # the test schedule has three entries: three failures make a dead letter
    receiver.responder = lambda request, n: web.Response(status=500 if n <= 4 else 204)
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    await eventually(lambda: _has_outcome(api, job["id"], "dead"))
    status, _, _ = await api.request("POST", f"/v1/jobs/{job['id']}/redeliver")
    assert status == 202
    await eventually(lambda: _has_outcome(api, job["id"], "delivered"))
    _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
    attempts = [(d["attempt"], d["outcome"]) for d in body["deliveries"]]
    # attempt 4 fails and the schedule, started again, has two more: attempt 5 delivers
    assert attempts == [(1, "failed"), (2, "failed"), (3, "dead"), (4, "failed"), (5, "delivered")]
    assert body["events"][-1]["attempts"] == 5 and body["events"][-1]["state"] == "delivered"


async def _has_outcome(api: Api, job_id: str, outcome: str) -> bool:
    _, body, _ = await api.request("GET", f"/v1/jobs/{job_id}/deliveries")
    return any(d["outcome"] == outcome for d in body["deliveries"])


async def test_any_event_can_be_redelivered_with_its_webhook_id(
    api: Api, simulator: Any, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=1.0)  # progress for a second: delivered before the completion can supersede it
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    progress = next(r for r in receiver.received if r.event["type"] == "job.progress")
    event_id = progress.headers["webhook-id"]
    status, body, _ = await api.request("POST", f"/v1/jobs/{job['id']}/redeliver", json={"eventId": event_id})
    assert status == 202 and body == {"jobId": job["id"], "eventId": event_id, "type": "job.progress"}
    await receiver.wait_for(lambda: [r.headers["webhook-id"] for r in receiver.received].count(event_id) == 2)
    assert receiver.received[-1].body == progress.body  # the same event, signed afresh

    status, problem, _ = await api.request("POST", f"/v1/jobs/{job['id']}/redeliver", json={"eventId": "msg_nope"})
    assert status == 422 and problem["errors"][0]["field"] == "eventId"
