"""``relay listen`` as a user runs it: a real subprocess receiving what a real worker delivers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from standardwebhooks.webhooks import Webhook

from relay.cli.devstate import dev_state
from relay.config.settings import Settings
from tests.helpers import RELAY, SECRET, Api, eventually, relay_env, running_api, running_worker

OTHER_SECRET = "whsec_" + "QUJD" * 8
COMPLETED = {"status": "completed", "percentageComplete": 100.0, "resourceId": "01ABC"}


@contextlib.asynccontextmanager
async def listening(*args: str, **env: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``relay listen --port 0 ...``: its URL (from the line it starts with) and the process."""
    proc = await asyncio.create_subprocess_exec(
        RELAY,
        "listen",
        "--port",
        "0",
        *args,
        env=relay_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        first = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", first)
        assert found, first
        yield found.group(1), proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _copy(api: Api, simulator: Any, callback: str, **extra: Any) -> dict[str, Any]:
    """A copy that runs a second: progress events, each delivered long before the completion could supersede it."""
    op = simulator.create(duration=1.0)
    return await api.create(monitorUrl=op.monitor_url, callbackUrl=callback, **extra)


async def _delivered(api: Api, job_id: str) -> bool:
    _, body, _ = await api.request("GET", f"/v1/jobs/{job_id}")
    return bool(
        body["delivery"] and body["delivery"]["type"] == "job.completed" and body["delivery"]["state"] == "delivered"
    )


async def test_listen_verifies_prints_each_event_and_refuses_a_bad_signature(
    settings: Settings, redis: Any, simulator: Any
) -> None:
    async with listening("--secret", SECRET) as (base, proc), running_api(settings) as api, running_worker(settings):
        job = await _copy(api, simulator, f"{base}/hooks/relay", metadata={"order": "A-1"})
        await eventually(lambda: _delivered(api, job["id"]), timeout=20)
        async with aiohttp.ClientSession() as session:  # a sender with another secret
            body = b'{"type":"job.completed","data":{}}'
            headers = {
                "webhook-id": "msg_forged",
                "webhook-timestamp": str(int(datetime.now(UTC).timestamp())),
                "webhook-signature": Webhook(OTHER_SECRET).sign("msg_forged", datetime.now(UTC), body.decode()),
            }
            async with session.post(f"{base}/hooks/relay", data=body, headers=headers) as resp:
                assert resp.status == 401
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0
    lines = out.decode().splitlines()
    progress = [line for line in lines if "job.progress" in line]
    completed = [line for line in lines if "job.completed" in line]
    assert progress and f"{job['id']} #" in progress[0] and "ItemCopy" in progress[0]
    assert re.search(r"  \d+(\.\d+)?%  ", progress[0]), progress[0]
    assert len(completed) == 1 and "100%" in completed[0] and '"order":"A-1"' in completed[0]
    assert "401 refused" in err.decode() and "msg_forged" in err.decode() and "No matching signature" in err.decode()
    assert f"{len(lines)} events verified, 1 refused" in err.decode()


async def test_listen_json_prints_the_bodies_with_the_secret_from_the_environment(
    settings: Settings, redis: Any, simulator: Any
) -> None:
    async with (
        listening("--json", RELAY_SIGNING_SECRETS=SECRET) as (base, proc),
        running_api(settings) as api,
        running_worker(settings),
    ):
        job = await _copy(api, simulator, f"{base}/hook")
        await eventually(lambda: _delivered(api, job["id"]), timeout=20)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert {e["type"] for e in events[:-1]} == {"job.progress"} and events[-1]["type"] == "job.completed"
    assert events[-1]["data"]["jobId"] == job["id"]


async def test_a_wrong_secret_shows_as_401_in_relays_attempts(settings: Settings, redis: Any, simulator: Any) -> None:
    async with (
        listening("--secret", OTHER_SECRET) as (base, proc),
        running_api(settings) as api,
        running_worker(settings),
    ):
        job = await _copy(api, simulator, f"{base}/hook")

        async def refused() -> bool:
            _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
            return any(
                (d.get("error") or "").startswith("HTTP 401 Unauthorized from 127.0.0.1:") for d in body["deliveries"]
            )

        await eventually(refused, timeout=20)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert "401 refused" in err.decode() and "the secret relay signs with" in err.decode()


async def test_listen_takes_the_secret_relay_dev_keeps(tmp_path: Path) -> None:
    kept = dev_state(tmp_path / "relay" / "dev.json")  # what relay dev made on its first run
    async with listening(XDG_STATE_HOME=str(tmp_path)) as (base, proc):
        body = b'{"type":"job.completed","timestamp":"t","data":{"jobId":"j1","sequence":1,"status":"completed"}}'
        now = datetime.now(UTC)
        headers = {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(kept.signing_secret).sign("msg_1", now, body.decode()),
        }
        async with aiohttp.ClientSession() as session, session.post(f"{base}/hook", data=body, headers=headers) as resp:
            assert resp.status == 204
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert "job.completed" in out.decode() and "j1 #1" in out.decode()
    assert kept.signing_secret not in out.decode() + err.decode()


def test_listen_without_a_secret_says_how_to_give_one(tmp_path: Path) -> None:
    env = relay_env(XDG_STATE_HOME=str(tmp_path))  # no secret given, and relay dev has kept none here
    proc = subprocess.run([RELAY, "listen"], env=env, capture_output=True, text=True, timeout=30)  # noqa: S603
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--secret" in proc.stderr and "RELAY_SIGNING_SECRETS" in proc.stderr
