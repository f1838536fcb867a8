"""A peer's answer relay cannot store or use is the peer's fault: an event with a clear error, never a traceback.

Before, each of these raised in the worker at every lease, forever (issue 26): a monitor answer or a DriveItem
with a lone surrogate (Redis' cjson refuses ``\\ud800``), JSON nested deeper than the stdlib parser recurses, a
job stored with a callback host that is no DNS name (``UnicodeError`` at each delivery) or an authorization
holding CR/LF (``ValueError`` at each DriveItem request).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.core.crypto import Vault
from relay.core.schema import Job
from relay.store import keys
from tests.helpers import Api, Receiver, eventually


class Peer:
    """A monitor and a DriveItem host on loopback whose answers a test sets."""

    def __init__(self) -> None:
        self.monitor: tuple[int, bytes] = (202, b'{"status": "inProgress"}')
        self.item: tuple[int, bytes] = (200, b"{}")
        self.base = ""

    async def _monitor(self, _: web.Request) -> web.Response:
        status, body = self.monitor
        return web.Response(status=status, body=body, content_type="application/json")

    async def _item(self, _: web.Request) -> web.Response:
        status, body = self.item
        return web.Response(status=status, body=body, content_type="application/json")

    @property
    def item_url(self) -> str:
        return f"{self.base}/v1.0/me/drive/items/{{resourceId}}"


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with running_peer() as p:
        yield p


@contextlib.asynccontextmanager
async def running_peer() -> AsyncIterator[Peer]:
    p = Peer()
    app = web.Application()
    app.router.add_get("/monitor/{n}", p._monitor)
    app.router.add_get("/v1.0/me/drive/items/{id}", p._item)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    p.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield p
    await runner.cleanup()


def ascii_json(value: Any) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: a lone surrogate is written as \ud800


COMPLETED = {"status": "completed", "percentageComplete": 100, "resourceId": "01ITEM"}


async def test_a_monitor_answer_with_lone_surrogates_is_recorded_scrubbed(
    api: Api, worker: Any, receiver: Receiver, peer: Peer
) -> None:
    peer.monitor = (202, ascii_json({"status": "inProgress", "percentageComplete": 5, "operation": "x\udfff"}))
    jobs = [await api.create(monitorUrl=f"{peer.base}/monitor/1", callbackUrl=receiver.url) for _ in range(2)]
    for job in jobs:  # both tenants' jobs sharing the monitor get their events
        await receiver.wait_for(lambda j=job: bool(receiver.events(j["id"])), timeout=10)
    peer.monitor = (200, ascii_json({**COMPLETED, "error": {"code": "x\ud800"}}))
    for job in jobs:
        await receiver.wait_for(lambda j=job: receiver.terminal(j["id"]) is not None, timeout=10)
        assert receiver.terminal(job["id"])["type"] == "job.completed"  # type: ignore[index]


async def test_a_drive_item_with_a_lone_surrogate_in_its_name_completes_the_job(
    api: Api, worker: Any, receiver: Receiver, peer: Peer
) -> None:
    peer.monitor = (200, ascii_json(COMPLETED))
    peer.item = (200, ascii_json({"id": "01ITEM", "name": "report\ud800.docx", "k\udc00": ["\udfff"]}))
    job = await api.create(
        monitorUrl=f"{peer.base}/monitor/1",
        callbackUrl=receiver.url,
        driveItemUrl=peer.item_url,
        authorization="Bearer t",
    )
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=10)
    event = receiver.terminal(job["id"])
    assert event is not None and event["type"] == "job.completed"
    item = event["data"]["driveItem"]
    assert item["name"] == "report\ufffd.docx" and item["k\ufffd"] == ["\ufffd"]


@pytest.mark.parametrize("depth", [2000, 200_000])
async def test_a_deeply_nested_drive_item_is_an_invalid_response(
    api: Api, worker: Any, receiver: Receiver, peer: Peer, depth: int
) -> None:
    peer.monitor = (200, ascii_json(COMPLETED))
    peer.item = (200, b'{"id": "01ITEM", "x": ' + b"[" * depth + b"]" * depth + b"}")
    job = await api.create(
        monitorUrl=f"{peer.base}/monitor/1",
        callbackUrl=receiver.url,
        driveItemUrl=peer.item_url,
        authorization="Bearer t",
    )
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=10)
    event = receiver.terminal(job["id"])
    assert event is not None and event["data"]["resolutionError"]["code"] == "invalidResponse"


@pytest.mark.parametrize("depth", [2000, 200_000])
async def test_a_deeply_nested_monitor_answer_is_an_invalid_answer(
    api: Api, worker: Any, receiver: Receiver, peer: Peer, depth: int
) -> None:
    peer.monitor = (202, b'{"status": "inProgress", "x": ' + b"[" * depth + b"]" * depth + b"}")
    job = await api.create(monitorUrl=f"{peer.base}/monitor/1", callbackUrl=receiver.url)
    # invalid answers in a row (RELAY_POLL_MAX_INVALID, 3 in the tests) fail the job
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=10)
    event = receiver.terminal(job["id"])
    assert event is not None and event["type"] == "job.failed"


async def test_a_stored_callback_host_that_is_no_dns_name_dead_letters(
    api: Api, worker: Any, receiver: Receiver, peer: Peer, redis: Redis
) -> None:
    peer.monitor = (202, ascii_json({"status": "notStarted"}))
    job = await api.create(monitorUrl=f"{peer.base}/monitor/1", callbackUrl=receiver.url)
    # a job stored before registration checked host names (or by a relay that did not)
    await redis.hset(keys.job(job["id"]), Job.name_of(lambda j: j.callback_url), f"http://{'a' * 64}.example.com/h")
    peer.monitor = (200, ascii_json(COMPLETED))

    async def dead() -> bool:
        _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
        return any(d["outcome"] == "dead" for d in body["deliveries"])

    await eventually(dead, timeout=15)
    _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
    assert "not a valid DNS name" in body["deliveries"][-1]["error"], body


async def test_a_stored_authorization_with_cr_lf_ends_the_resolution(
    api: Api, worker: Any, receiver: Receiver, peer: Peer, redis: Redis, settings: Settings
) -> None:
    peer.monitor = (202, ascii_json({"status": "notStarted"}))
    job = await api.create(
        monitorUrl=f"{peer.base}/monitor/1",
        callbackUrl=receiver.url,
        driveItemUrl=peer.item_url,
        authorization="Bearer t",
    )
    sealed = Vault(settings.vault_keys).encrypt("Bearer a\r\nX-Evil: 1")
    await redis.hset(keys.job(job["id"]), "authorization", sealed)
    peer.monitor = (200, ascii_json(COMPLETED))
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=10)
    event = receiver.terminal(job["id"])
    assert event is not None and event["data"]["resolutionError"]["code"] == "blocked"
    assert "control character" in event["data"]["resolutionError"]["message"]
