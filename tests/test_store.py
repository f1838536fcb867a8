"""Store scripts against a real Redis: the delivery schedule's order."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.core.ops import JobOp
from relay.core.schema import DeliveryOutcome, Job
from relay.store.durable import DurableRedis
from relay.store.jobs import Store
from relay.store.open import open_store


def _event(kind: str) -> dict[str, str]:
    return {"id": f"msg_{uuid.uuid4().hex}", "type": kind, "body": "{}"}


async def _jobs(store: Store, count: int) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(count)]
    for i, jid in enumerate(ids):
        await store.register(jid, Job(owner="public", callback_url="http://127.0.0.1:1029/h"), f"http://m/{i}")
    return ids


async def test_a_terminal_event_is_delivered_before_waiting_progress(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    early, later, done = await _jobs(store, 3)
    for jid in (early, later):
        assert await store.apply_job(JobOp(job=jid, prev_seq=0, events=[_event("job.progress")])) == "ok"
    assert await store.apply_job(JobOp(job=done, prev_seq=0, events=[_event("job.completed")], terminal=True)) == "ok"
    first, *rest = await store.deliveries.claim(3, lease=30)
    assert first.member == done and {c.member for c in rest} == {early, later}


async def test_a_job_being_delivered_keeps_its_lease(redis: Redis) -> None:
    store = Store(redis, retention=60, job_timeout=60)
    (jid,) = await _jobs(store, 1)
    await store.apply_job(JobOp(job=jid, prev_seq=0, events=[_event("job.progress")]))
    (claim,) = await store.deliveries.claim(1, lease=30)
    # the completion arrives while the progress event is out: no second worker may take the job
    await store.apply_job(JobOp(job=jid, prev_seq=1, events=[_event("job.completed")], terminal=True))
    assert await store.deliveries.claim(1, lease=30) == []
    # once the progress event is acknowledged, the completion is first in line
    event_id = (await store.event_ids(jid))[0]
    assert await store.submit_ack(claim, event_id=event_id, outcome=DeliveryOutcome.DELIVERED) == 1
    other = (await _jobs(store, 1))[0]
    await store.apply_job(JobOp(job=other, prev_seq=0, events=[_event("job.progress")]))
    assert [c.member for c in await store.deliveries.claim(2, lease=30)] == [jid, other]


async def test_the_store_opened_from_the_settings_is_on_their_redis_for_as_long_as_they_say(
    settings: Settings, redis: Redis
) -> None:
    """The API and the worker open the store this one way (relay/store/open.py)."""
    store = open_store(settings.replace(job_retention=120.0, job_timeout=60.0, redis_min_replicas=1, monitor_chunk=8))
    try:
        assert isinstance(store.redis, DurableRedis) and store.redis.min_replicas == 1
        assert (store.retention, store.event_ttl, store.chunk) == (120, 180, 8)
        await store.redis.set("test:opened", "1")  # not a key of relay's: only which server it reached matters
        assert await redis.get("test:opened") == "1"
    finally:
        await store.redis.aclose()
    plain = open_store(settings)
    assert type(plain.redis) is Redis  # no WAIT round trip unless replicas are asked for
    await plain.redis.aclose()


async def test_the_job_a_registration_answers_with_is_the_job_it_stored(redis: Redis) -> None:
    # the answer is made from the change (Job.as_stored), not read back: it must be what a read of the stored job gives
    store = Store(redis, retention=60, job_timeout=60)
    change = Job(
        owner="public",
        callback_url="http://127.0.0.1:1029/h",
        drive_item_url="http://127.0.0.1:1029/v1.0/me/drive/items/{resourceId}",
        authorization="v2.sealed",
        metadata='{"requestId":"r-1"}',
        secret="v2.secret",
        progress_interval=5.0,
    )
    change.monitor_host = "127.0.0.1"
    jid = uuid.uuid4().hex
    registered = await store.register(jid, change, "http://127.0.0.1:1029/monitor/1")
    answered, read = registered.job, await store.job(jid)
    assert answered is not None and read is not None
    assert vars(answered) == vars(Job.from_hash(jid, answered.fields))
    assert answered.created > 0 and answered.monitor_key and answered.progress_interval == 5.0
    assert {name: getattr(answered, name) for name in Job.attrs} == {name: getattr(read, name) for name in Job.attrs}
