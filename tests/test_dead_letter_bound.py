"""RELAY_DEAD_LETTERS_MAX: the count (relay:dead) and each owner's listing keep the newest dead letters; the oldest
beyond are dropped and counted; those whose event has expired leave too."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.store import keys
from tests.helpers import Api, Receiver, eventually, with_settings

COMPLETED = {"status": "completed", "percentageComplete": 100.0, "resourceId": "01ABC"}


async def _dead_letters(api: Api) -> list[dict[str, Any]]:
    status, body, _ = await api.request("GET", "/v1/dead-letters")
    assert status == 200
    letters: list[dict[str, Any]] = body["deadLetters"]
    return letters


async def test_the_oldest_dead_letters_beyond_the_bound_are_dropped_and_counted(
    api: Api, simulator: Any, receiver: Receiver, start_worker: Any, settings: Settings, redis: Redis
) -> None:
    receiver.responder = lambda request, n: web.Response(status=500)
    # one an earlier version left whose event expired long ago: it leaves when the next dead letter comes
    await redis.zadd(keys.DEAD_LETTERS, {"msg_long_expired": 1.0})
    jobs: list[str] = []
    async with start_worker(with_settings(settings, dead_letters_max=2)):
        for _ in range(4):  # one at a time: they die in this order
            op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
            job_id = (await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url))["id"]
            jobs.append(job_id)

            async def dead(job_id: str = job_id) -> bool:
                return any(d["jobId"] == job_id for d in await _dead_letters(api))

            await eventually(dead)

    assert await redis.zcard(keys.DEAD_LETTERS) == 2
    assert [d["jobId"] for d in await _dead_letters(api)] == [jobs[3], jobs[2]]  # newest first, the newest two
    assert await redis.zcard(keys.owner_dead_letters("public")) == 2
    assert await redis.hget(keys.STATS, "dead_dropped") == "2"  # type: ignore[misc]  # the expired one: not dropped
    async with api.session.get(api.base + "/metrics") as resp:
        samples = {s.name: s.value for f in text_string_to_metric_families(await resp.text()) for s in f.samples}
    assert samples["relay_dead_letters"] == 2 and samples["relay_dead_letters_dropped"] == 2

    # a dropped one's event is still the job's, dead, and can be sent again
    status, body, _ = await api.request("GET", f"/v1/jobs/{jobs[0]}/deliveries")
    assert status == 200 and [e["state"] for e in body["events"]] == ["dead"]
    status, _, _ = await api.request("POST", f"/v1/jobs/{jobs[0]}/redeliver")
    assert status == 202
