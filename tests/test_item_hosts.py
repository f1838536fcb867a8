"""Where a Graph token may go: a DriveItem host on RELAY_ITEM_ALLOWED_HOSTS, at registration and at request time."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from relay.config.settings import DEFAULT_ITEM_HOSTS, Settings
from relay.simulator import Simulator
from tests.helpers import Api, Receiver, running_worker, with_settings


def test_the_default_item_hosts_are_microsofts_graph_hosts() -> None:
    hosts = Settings.from_env({}).item_allowed_hosts
    assert hosts == DEFAULT_ITEM_HOSTS
    assert "graph.microsoft.com" in hosts and "*.sharepoint.com" in hosts
    assert Settings.from_env({"RELAY_ITEM_ALLOWED_HOSTS": "graph.example"}).item_allowed_hosts == ("graph.example",)


async def test_a_drive_item_url_off_the_allowlist_is_refused_at_registration(api: Api, receiver: Receiver) -> None:
    status, problem, _ = await api.request(
        "POST",
        "/v1/jobs",
        json={
            "monitorUrl": "http://127.0.0.1:1029/monitor/1",
            "callbackUrl": receiver.url,
            "driveItemUrl": "https://evil.example/v1.0/me/drive/items/{resourceId}",
            "authorization": "Bearer graph-token",
        },
    )
    assert status == 422, problem
    assert problem["errors"] == [
        {"field": "driveItemUrl", "message": "the DriveItem host is not in RELAY_ITEM_ALLOWED_HOSTS"}
    ]
    listed, body, _ = await api.request("GET", "/v1/jobs")
    assert listed == 200 and body["jobs"] == []


async def test_no_token_leaves_for_a_host_the_allowlist_dropped_after_registration(
    api: Api, simulator: Simulator, receiver: Receiver, settings: Settings, redis: Redis
) -> None:
    op = simulator.create(duration=0.2)
    job = await api.create(
        monitorUrl=op.monitor_url,
        callbackUrl=receiver.url,
        driveItemUrl=f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}",
        authorization="Bearer sim-token",
    )
    narrowed = with_settings(settings, item_allowed_hosts=("graph.microsoft.com",))
    async with running_worker(narrowed):
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    done: Any = receiver.terminal(job["id"])
    assert done["type"] == "job.completed" and done["data"]["driveItem"] is None
    assert done["data"]["resolutionError"]["code"] == "blocked"
    assert simulator.item_auth_headers == [], "the token reached a host off the allowlist"
