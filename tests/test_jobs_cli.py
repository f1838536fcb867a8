"""``relay jobs ...`` as a user runs it: a real subprocess against a real API on a loopback port.

The subprocess is awaited with asyncio, so the in-process API keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.simulator import Simulator
from tests.helpers import BETA_SECRET, RELAY, SECRET, Api, Receiver, eventually, running_api, two_tenants, with_settings
from tests.helpers import relay_env as clean_env

TOKEN = "cli-token"


@pytest.fixture
async def owned_api(settings: Settings, redis: Redis) -> AsyncIterator[Api]:
    async with running_api(
        two_tenants(settings, tokens=f"cli:{TOKEN},other:other-token", secrets=f"cli:{SECRET},other:{BETA_SECRET}")
    ) as client:
        yield client


async def relay_jobs(api: Api, *args: str, **env: str) -> tuple[int, str, str]:
    environment = clean_env(RELAY_API_TOKENS=f"cli:{TOKEN},other:other-token", COLUMNS="200", **env)
    proc = await asyncio.create_subprocess_exec(
        RELAY,
        "jobs",
        *args,
        "--api",
        api.base,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def create(api: Api, sim: Simulator, receiver: Receiver, token: str = TOKEN, **knobs: Any) -> dict[str, Any]:
    op = sim.create(**knobs)
    body = {"monitorUrl": op.monitor_url, "callbackUrl": receiver.url}
    status, job, _ = await api.request("POST", "/v1/jobs", json=body, headers={"Authorization": f"Bearer {token}"})
    assert status == 201
    result: dict[str, Any] = job
    return result


async def test_list_shows_the_tokens_jobs_in_a_table(owned_api: Api, simulator: Simulator, receiver: Receiver) -> None:
    mine = [await create(owned_api, simulator, receiver, duration=60) for _ in range(2)]
    theirs = await create(owned_api, simulator, receiver, token="other-token")
    code, out, err = await relay_jobs(owned_api, "list")
    assert code == 0, err
    assert all(job["id"] in out for job in mine) and theirs["id"] not in out
    assert out.index(mine[1]["id"]) < out.index(mine[0]["id"])  # newest first
    assert "notStarted" in out and "0.0%" in out

    code, out, err = await relay_jobs(owned_api, "list", "--limit", "1", "--json")
    assert code == 0, err
    page = json.loads(out)
    assert [j["id"] for j in page["jobs"]] == [mine[1]["id"]] and page["nextCursor"]

    # RELAY_API_TOKEN wins over RELAY_API_TOKENS; --token over both
    code, out, _ = await relay_jobs(owned_api, "list", RELAY_API_TOKEN="other-token")
    assert code == 0 and theirs["id"] in out and mine[0]["id"] not in out
    code, _, err = await relay_jobs(owned_api, "list", "--token", "wrong")
    assert code == 1 and "401 Unauthorized" in err and "wrong" not in err


async def test_show_and_redeliver_a_finished_job(
    owned_api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    job = await create(owned_api, simulator, receiver, duration=0.3)
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    code, out, err = await relay_jobs(owned_api, "show", job["id"])
    assert code == 0, err
    assert job["id"] in out and "completed" in out and "job.completed" in out and "delivered" in out

    code, out, err = await relay_jobs(owned_api, "redeliver", job["id"])
    assert code == 0, err
    terminal = receiver.terminal(job["id"])
    assert terminal is not None and "queued job.completed" in out
    webhook_id = next(r.headers["webhook-id"] for r in receiver.received if r.event["type"] == "job.completed")
    assert webhook_id in out
    await receiver.wait_for(lambda: sum(r.headers["webhook-id"] == webhook_id for r in receiver.received) == 2)


async def test_cancel_and_errors(owned_api: Api, simulator: Simulator, receiver: Receiver) -> None:
    job = await create(owned_api, simulator, receiver, duration=60)
    code, out, err = await relay_jobs(owned_api, "cancel", job["id"])
    assert code == 0, err
    assert f"cancelled {job['id']}" in out
    status, body, _ = await owned_api.request(
        "GET", f"/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200 and body["status"] == "cancelled"

    code, _, err = await relay_jobs(owned_api, "redeliver", job["id"])
    assert code == 1 and "409 No terminal event" in err
    code, _, err = await relay_jobs(owned_api, "show", "0" * 32)
    assert code == 1 and "404 Not Found: no such job" in err


async def test_a_job_waiting_for_authorization_says_so(
    owned_api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=0.2)
    body = {
        "monitorUrl": op.monitor_url,
        "callbackUrl": receiver.url,
        "driveItemUrl": f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}",
        "authorization": "Bearer expired-long-ago",
    }
    status, job, _ = await owned_api.request(
        "POST", "/v1/jobs", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 201
    await receiver.wait_for(lambda: any(e["type"] == "job.authorizationRequired" for e in receiver.events(job["id"])))
    code, out, err = await relay_jobs(owned_api, "list")
    assert code == 0 and "waiting for authorization" in out, err
    code, out, err = await relay_jobs(owned_api, "show", job["id"])
    assert code == 0, err
    assert "awaitingAuthorization" in out and "job.authorizationRequired" in out


#: a monitor's operation that sets the terminal's title, clears the screen (7-bit and C1 forms), reverses
#: the text that follows, and closes a rich markup tag that was never opened
HOSTILE = "ItemCopy\x1b]0;owned\x07\x1b[2J\x9b31m\u202e[/] [bold]x"


async def test_what_a_monitor_wrote_is_shown_escaped_never_obeyed(
    owned_api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    answer = {
        "status": 202,
        "body": {"status": "inProgress", "operation": HOSTILE, "percentageComplete": 10, "statusDescription": "[/]"},
    }
    job = await create(owned_api, simulator, receiver, script=[answer])
    await receiver.wait_for(lambda: any(e["type"] == "job.progress" for e in receiver.events(job["id"])))
    for args in (("list",), ("show", job["id"])):
        code, out, err = await relay_jobs(owned_api, *args)
        assert code == 0, err
        assert not any(c in out for c in "\x1b\x07\x9b\u202e"), f"relay jobs {args[0]} printed control characters"
        assert "ItemCopy\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202e[/] [bold]x" in out, out


async def test_a_completed_job_whose_webhook_waits_says_when_it_is_tried_again(
    owned_api: Api, simulator: Simulator, receiver: Receiver, settings: Settings, start_worker: Any
) -> None:
    receiver.responder = lambda request, n: web.Response(status=503)
    job = await create(owned_api, simulator, receiver, duration=0.2)
    async with start_worker(with_settings(settings, delivery_schedule=(0, 300))):
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)

        async def retrying() -> bool:
            _, view, _ = await owned_api.request(
                "GET", f"/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            return bool(view["delivery"] and view["delivery"]["state"] == "retrying")

        await eventually(retrying)
    code, out, err = await relay_jobs(owned_api, "list")
    assert code == 0 and "completed, delivery retrying" in out, err
    code, out, err = await relay_jobs(owned_api, "show", job["id"])
    assert code == 0, err
    assert "job.completed (seq" in out and "retrying" in out and "HTTP 503 Service Unavailable from 127.0.0.1:" in out
    assert re.search(r"next attempt \S+Z \(in [345] min \d+ s\)", out), out
