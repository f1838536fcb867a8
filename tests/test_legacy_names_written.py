"""RELAY_STORE_LEGACY_FORMAT=on (a rolling upgrade from a version before 2026-12-07): a job's renamed fields are
written under the names that version wrote, and sealed values with base64 padding, so that its processes, still
running on the same Redis, read them; both forms are read still. The switch is made once at a process's start:
the processes here are real ``relay serve`` and ``relay worker`` processes, beside this test's own (which writes
the short names)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from relay.core.schema import Job, write_legacy_names
from relay.store import keys
from relay.store.scripts import LuaScript, compose
from tests.helpers import Api, Receiver, ensure_stopped, free_port, loopback_env, start_relay, wait_http
from tests.test_security import opened_as_before

SHORT = {"cb", "mk", "host", "item"}
LEGACY = {"callback_url", "monitor_key", "monitor_host", "drive_item_url"}


@pytest.fixture
def legacy_names() -> Iterator[None]:
    """This process writing the legacy names (as a process started with the setting on), then the default again."""
    write_legacy_names(True)
    try:
        yield
    finally:
        write_legacy_names(False)


def test_records_are_written_under_the_legacy_names_and_read_under_either(legacy_names: None) -> None:
    change = Job(callback_url="http://a/h", monitor_key="m", owner="o")
    assert change.fields == {"callback_url": "http://a/h", "monitor_key": "m", "owner": "o"}
    assert Job.name_of(lambda j: j.drive_item_url) == "drive_item_url"
    # a job written with the short names (a process with the setting off) reads as one written now
    short = Job.from_hash("j", {"cb": "http://a/h", "mk": "m", "host": "h", "item": "http://i", "seq": "3"})
    assert (short.callback_url, short.monitor_key, short.monitor_host, short.drive_item_url, short.sequence) == (
        "http://a/h",
        "m",
        "h",
        "http://i",
        3,
    )
    # under both names the legacy one wins here too: an older process, which writes it alone, wrote it last
    assert Job.from_hash("j", {"cb": "http://new/h", "callback_url": "http://old/h"}).callback_url == "http://old/h"
    assert Job.from_hash_lenient("j", {"cb": "http://a/h", "seq": "x"}).callback_url == "http://a/h"
    # a change replaces the field under both names
    assert short.merged(Job(callback_url="http://b/h")).fields["callback_url"] == "http://b/h"
    assert "cb" not in short.merged(Job(callback_url="http://b/h")).fields


def test_the_setting_chooses_the_names_the_scripts_write_and_off_is_as_before() -> None:
    off = compose("patch.lua")
    write_legacy_names(True)
    try:
        on = compose("patch.lua")
        assert "callback_url = 'callback_url'" in on and "callback_url = 'cb'" not in on
    finally:
        write_legacy_names(False)
    assert compose("patch.lua") == off and "callback_url = 'cb'" in off
    assert Job(callback_url="http://a/h").fields == {"cb": "http://a/h"}


async def test_scripts_of_both_settings_run_side_by_side_on_one_redis(redis: Redis) -> None:
    source = (
        "--! uses lib/job_fields.lua\n"
        "local jk = key_job('j1')\n"
        "local read = job_get(jk, JOB.callback_url)\n"
        "job_set(jk, {[JOB.callback_url] = ARGV[1]})\n"
        "return read or ''"
    )
    short = LuaScript.from_source("probe.lua", source)
    write_legacy_names(True)
    try:
        legacy = LuaScript.from_source("probe.lua", source)
    finally:
        write_legacy_names(False)
    assert short.sha != legacy.sha
    jk = keys.job("j1")
    assert await legacy.run(redis, args=["http://a/h"]) == ""
    assert await redis.hgetall(jk) == {"callback_url": "http://a/h"}  # type: ignore[misc]
    assert await short.run(redis, args=["http://b/h"]) == "http://a/h"
    assert await redis.hgetall(jk) == {"cb": "http://b/h"}  # type: ignore[misc]
    assert await legacy.run(redis, args=["http://c/h"]) == "http://b/h"
    assert await redis.hgetall(jk) == {"callback_url": "http://c/h"}  # type: ignore[misc]
    await redis.hset(jk, "cb", "http://d/h")  # type: ignore[misc]
    assert await legacy.run(redis, args=["http://e/h"]) == "http://c/h"  # the legacy name wins here too
    assert await redis.hgetall(jk) == {"callback_url": "http://e/h"}  # type: ignore[misc]
    assert await redis.script_exists(short.sha, legacy.sha) == [True, True]


@contextlib.asynccontextmanager
async def legacy_relay(redis_url: str) -> AsyncIterator[Api]:
    """``relay serve`` and ``relay worker`` started with RELAY_STORE_LEGACY_FORMAT=on; a client of that API."""
    port = free_port()
    env = loopback_env(
        redis_url,
        RELAY_STORE_LEGACY_FORMAT="on",
        RELAY_PORT=str(port),
        RELAY_POLL_INITIAL_INTERVAL="0.05",
        RELAY_POLL_MAX_INTERVAL="0.3",
        RELAY_DELIVERY_SCHEDULE="0,0.1,0.2",
        RELAY_REQUEST_TIMEOUT="2",
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_relay("serve", env))
        procs.append(start_relay("worker", env))
        base = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_http, f"{base}/readyz", procs[0], 30)
        async with aiohttp.ClientSession() as session:
            yield Api(base, session)
        for proc in procs:
            assert proc.poll() is None, f"relay exited with {proc.returncode}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(15)
            ensure_stopped(proc)


async def stored_names(redis: Redis, job_id: str) -> set[str]:
    return set(await redis.hkeys(keys.job(job_id)))  # type: ignore[misc]


async def test_with_the_setting_on_a_job_is_stored_under_the_legacy_names_polled_resolved_and_delivered(
    settings: Any, simulator: Any, receiver: Receiver, redis: Redis
) -> None:
    op = simulator.create(duration=0.5)
    item_url = f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}"
    async with legacy_relay(settings.redis_url) as api:
        job_id = (
            await api.create(
                monitorUrl=op.monitor_url,
                callbackUrl=receiver.url,
                driveItemUrl=item_url,
                authorization="Bearer sim-token",
            )
        )["id"]
        names = await stored_names(redis, job_id)
        assert names >= LEGACY and not names & SHORT
        monitor = await redis.hget(keys.job(job_id), "monitor_key")  # type: ignore[misc]
        sealed = [
            await redis.hget(keys.monitor(monitor), "url"),  # type: ignore[misc]
            await redis.hget(keys.job(job_id), "authorization"),  # type: ignore[misc]
        ]
        for value in sealed:  # padded: what 3e7c09e decodes (tests/test_security.py)
            assert value.startswith("g1.") and len(value[3:]) % 4 == 0 and opened_as_before(value)
        await receiver.wait_for(lambda: receiver.terminal(job_id) is not None, timeout=30)
        done = receiver.terminal(job_id)
        assert done is not None and done["type"] == "job.completed"
        assert done["data"]["driveItem"]["id"] == op.resource_id  # resolved, from the drive_item_url
        assert simulator.item_auth_headers == ["Bearer sim-token"]
        status, view, _ = await api.request("GET", f"/v1/jobs/{job_id}")
        assert status == 200 and view["status"] == "completed" and view["callbackUrl"] == receiver.url
        assert view["pollCount"] >= 1 and view["monitorHost"] == "127.0.0.1"
        names = await stored_names(redis, job_id)
        assert names >= LEGACY and not names & SHORT
        assert await redis.exists(keys.monitor(monitor)) == 0  # the job left its monitor, found by monitor_key


async def test_with_the_setting_on_a_job_is_patched_under_the_legacy_name_then_cancelled(
    settings: Any, simulator: Any, receiver: Receiver, redis: Redis
) -> None:
    op = simulator.create(duration=60)
    moved = Receiver()
    await moved.start()
    try:
        async with legacy_relay(settings.redis_url) as api:
            job_id = (await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url))["id"]
            monitor = await redis.hget(keys.job(job_id), "monitor_key")  # type: ignore[misc]
            await receiver.wait_for(lambda: bool(receiver.events(job_id)), timeout=30)  # polled
            status, _, _ = await api.request("PATCH", f"/v1/jobs/{job_id}", json={"callbackUrl": moved.url})
            assert status == 200
            stored = await redis.hgetall(keys.job(job_id))  # type: ignore[misc]
            assert stored["callback_url"] == moved.url and not set(stored) & SHORT
            await moved.wait_for(lambda: bool(moved.events(job_id)), timeout=30)  # delivered to the PATCHed callback
            status, _, _ = await api.request("DELETE", f"/v1/jobs/{job_id}")
            assert status in (200, 202, 204)
            status, view, _ = await api.request("GET", f"/v1/jobs/{job_id}")
            assert view["status"] == "cancelled" and view["callbackUrl"] == moved.url
            assert await redis.exists(keys.monitor(monitor)) == 0
            assert not await stored_names(redis, job_id) & SHORT
    finally:
        await moved.stop()


async def test_a_job_stored_with_the_short_names_is_read_by_processes_with_the_setting_on(
    api: Api, simulator: Any, receiver: Receiver, redis: Redis, settings: Any
) -> None:
    op = simulator.create(duration=0.5)
    item_url = f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}"
    job_id = (  # this process: the setting off
        await api.create(
            monitorUrl=op.monitor_url, callbackUrl=receiver.url, driveItemUrl=item_url, authorization="Bearer sim-token"
        )
    )["id"]
    names = await stored_names(redis, job_id)
    assert names >= SHORT and not names & LEGACY
    async with legacy_relay(settings.redis_url) as legacy_api:
        status, view, _ = await legacy_api.request("GET", f"/v1/jobs/{job_id}")
        assert status == 200 and "unreadable" not in view
        assert (view["callbackUrl"], view["driveItemUrl"], view["monitorHost"]) == (receiver.url, item_url, "127.0.0.1")
        await receiver.wait_for(lambda: receiver.terminal(job_id) is not None, timeout=30)
    done = receiver.terminal(job_id)
    assert done is not None and done["type"] == "job.completed" and done["data"]["driveItem"]["id"] == op.resource_id
    assert await redis.exists(keys.monitor(await redis.hget(keys.job(job_id), "mk"))) == 0  # type: ignore[misc]


def test_no_module_holds_a_renamed_fields_name_or_a_script_from_before_the_switch() -> None:
    """The CLI makes the switch after its imports: a module constant holding a renamed field's short name, or a script
    composed at import that names a job's fields, would write or read the wrong name for the process's life."""
    import importlib
    import pkgutil

    import relay
    import workers

    modules = [
        importlib.import_module(info.name)
        for package in (relay, workers)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        if not info.name.endswith(".__main__")
    ]
    write_legacy_names(True)
    try:
        stale = [
            f"{module.__name__}.{name}"
            for module in modules
            for name, value in vars(module).items()
            if (isinstance(value, LuaScript) and value.text != compose(value.name))
            or any(
                isinstance(v, str) and v in SHORT - {"host"}  # ('host': a common word)
                for v in (value if isinstance(value, (tuple, list, frozenset, set)) else (value,))
            )
        ]
    finally:
        write_legacy_names(False)
    assert stale == []
