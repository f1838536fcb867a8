"""A job's fields renamed to short names (bytes per job count) are still read under the names the previous version
wrote: a job it registered is polled, delivered, listed, shown, patched and cancelled as one registered now, and a
field an older process writes during a rolling upgrade (its own name, beside ours) is the value read."""

from __future__ import annotations

import re
from typing import Any

from redis.asyncio import Redis

from relay.core.schema import Job
from relay.store import keys
from relay.store.scripts import LUA_DIR, LuaScript
from tests.helpers import Api, Receiver, eventually

#: the names the version before 2026-12-07 wrote (relay/core/schema.py declares them as each field's legacy)
PREVIOUS = {"cb": "callback_url", "mk": "monitor_key", "host": "monitor_host", "item": "drive_item_url"}


def test_the_renamed_fields_declare_the_names_the_previous_version_wrote() -> None:
    assert Job.legacy_names == PREVIOUS
    assert Job.name_of(lambda j: j.callback_url) == "cb"


def test_a_record_reads_under_either_name_and_the_legacy_name_wins_over_ours() -> None:
    old = Job.from_hash("j", {"callback_url": "http://a/h", "monitor_key": "m", "seq": "2", "created": "5"})
    assert (old.callback_url, old.monitor_key, old.sequence, old.created) == ("http://a/h", "m", 2, 5)
    # an older relay serve PATCHed a record this version wrote: its write came last
    both = Job.from_hash("j", {"cb": "http://new/h", "callback_url": "http://old/h"})
    assert both.callback_url == "http://old/h"
    assert Job.from_hash("j", {"callback_url": "http://old/h", "cb": "http://new/h"}).callback_url == "http://old/h"
    assert Job.from_hash_lenient("j", {"callback_url": "http://old/h", "seq": "x"}).callback_url == "http://old/h"
    # a change of ours replaces the field under both names, as the scripts write it (job_set)
    changed = both.merged(Job(callback_url="http://newer/h"))
    assert changed.callback_url == "http://newer/h" and changed.fields == {"cb": "http://newer/h"}


def test_no_script_reads_a_renamed_field_by_its_name_alone() -> None:
    """A script that reads ``JOB.callback_url`` with a plain HGET would miss a job stored before: every use of a
    renamed field goes through lib/job_fields.lua (job_get, with_other_names; writes through job_set, job_del)."""
    renamed = [attr for attr, name in Job.attrs.items() if name in Job.legacy_names]
    direct = [
        f"{path.relative_to(LUA_DIR)}: {line.strip()}"
        for path in sorted(LUA_DIR.rglob("*.lua"))
        for line in path.read_text().splitlines()
        if re.search(rf"\bJOB\.({'|'.join(renamed)})\b", line)
        and not re.search(r"\b(job_get|with_other_names)\(", line)
    ]
    assert direct == []


async def test_the_scripts_read_a_renamed_field_under_either_name_and_write_ours(redis: Redis) -> None:
    probe = LuaScript.from_source(
        "probe.lua",
        "--! uses lib/job_fields.lua\n"
        "local jk = key_job('j1')\n"
        "local read = job_get(jk, JOB.monitor_key)\n"
        "if ARGV[1] == 'set' then job_set(jk, {[JOB.monitor_key] = 'ours', [JOB.owner] = 'o'}) end\n"
        "return read or ''",
    )
    jk = keys.job("j1")
    assert await probe.run(redis, args=["read"]) == ""
    await redis.hset(jk, mapping={"mk": "new"})
    assert await probe.run(redis, args=["read"]) == "new"
    await redis.hset(jk, mapping={"monitor_key": "old"})  # an older process wrote it after us
    assert await probe.run(redis, args=["set"]) == "old"
    assert await redis.hgetall(jk) == {"mk": "ours", "owner": "o"}  # type: ignore[misc]


async def as_previous_version(redis: Redis, job_id: str) -> dict[str, str]:
    """Rewrite a job's hash as the previous version wrote it (raw HSET, its field names); its fields."""
    key = keys.job(job_id)
    fields: dict[str, str] = await redis.hgetall(key)  # type: ignore[misc]
    old = {PREVIOUS.get(name, name): value for name, value in fields.items()}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping=old)
        await pipe.execute()
    return old


async def test_a_job_the_previous_version_registered_is_shown_listed_polled_and_delivered(
    api: Api, simulator: Any, receiver: Receiver, redis: Redis, start_worker: Any
) -> None:
    op = simulator.create(duration=0.5)
    item_url = f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}"
    job_id = (
        await api.create(
            monitorUrl=op.monitor_url, callbackUrl=receiver.url, driveItemUrl=item_url, authorization="Bearer sim-token"
        )
    )["id"]
    old = await as_previous_version(redis, job_id)
    assert {"callback_url", "monitor_key", "monitor_host", "drive_item_url"} <= set(old) and "cb" not in old

    status, view, _ = await api.request("GET", f"/v1/jobs/{job_id}")
    assert status == 200 and "unreadable" not in view
    assert (view["callbackUrl"], view["driveItemUrl"], view["monitorHost"]) == (receiver.url, item_url, "127.0.0.1")
    status, listed, _ = await api.request("GET", "/v1/jobs")
    assert status == 200 and [(j["id"], j["callbackUrl"]) for j in listed["jobs"]] == [(job_id, receiver.url)]

    async with start_worker():
        await receiver.wait_for(lambda: receiver.terminal(job_id) is not None)
    done = receiver.terminal(job_id)
    assert done is not None and done["type"] == "job.completed" and done["data"]["driveItem"]["id"] == op.resource_id
    assert simulator.item_auth_headers == ["Bearer sim-token"]  # the DriveItem fetched from the legacy drive_item_url
    # the job left its monitor (read under monitor_key) and the monitor went with its last job
    assert await redis.exists(keys.monitor(old["monitor_key"])) == 0
    assert await redis.zscore(keys.MONITORS, old["monitor_key"]) is None
    status, view, _ = await api.request("GET", f"/v1/jobs/{job_id}")
    assert view["status"] == "completed" and view["pollCount"] >= 1 and view["callbackUrl"] == receiver.url


async def test_a_job_the_previous_version_registered_is_patched_then_cancelled(
    api: Api, simulator: Any, receiver: Receiver, redis: Redis, start_worker: Any
) -> None:
    op = simulator.create(duration=60)
    job_id = (await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url))["id"]
    old = await as_previous_version(redis, job_id)
    moved = Receiver()
    await moved.start()
    try:
        async with start_worker():
            await receiver.wait_for(lambda: bool(receiver.events(job_id)))  # polled: its first progress event
            status, _, _ = await api.request("PATCH", f"/v1/jobs/{job_id}", json={"callbackUrl": moved.url})
            assert status == 200
            stored = await redis.hgetall(keys.job(job_id))  # type: ignore[misc]
            assert stored["cb"] == moved.url and "callback_url" not in stored  # ours written, the legacy one gone
            status, view, _ = await api.request("GET", f"/v1/jobs/{job_id}")
            assert view["callbackUrl"] == moved.url

            status, _, _ = await api.request("DELETE", f"/v1/jobs/{job_id}")
            assert status in (200, 202, 204)
            status, view, _ = await api.request("GET", f"/v1/jobs/{job_id}")
            assert view["status"] == "cancelled"
            assert await redis.exists(keys.monitor(old["monitor_key"])) == 0  # left its monitor, the last job
            assert await redis.zscore(keys.MONITORS, old["monitor_key"]) is None
    finally:
        await moved.stop()


async def test_a_callback_an_older_relay_serve_patched_during_a_rolling_upgrade_is_the_one_delivered_to(
    api: Api, simulator: Any, receiver: Receiver, redis: Redis, start_worker: Any
) -> None:
    op = simulator.create(duration=0.3)
    job_id = (await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url))["id"]
    other = Receiver()
    await other.start()
    try:
        await redis.hset(keys.job(job_id), "callback_url", other.url)  # type: ignore[misc]  # its PATCH, its name
        async with start_worker():
            await other.wait_for(lambda: other.terminal(job_id) is not None)
        assert receiver.events(job_id) == []

        async def shown() -> bool:
            _, view, _ = await api.request("GET", f"/v1/jobs/{job_id}")
            return bool(view["callbackUrl"] == other.url)

        await eventually(shown)
    finally:
        await other.stop()
