"""Redis state of jobs, monitors and events: every read and atomic write the API and workers share."""

from __future__ import annotations

import asyncio
import binascii
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from relay.core import jsonfast
from relay.core.ops import JobOp
from relay.core.schema import MONITOR_JOB_PREFIX, DeliveryOutcome, Event, Job, Monitor
from relay.store import keys
from relay.store.batched import BatchedScript
from relay.store.calls import AckCall, ApplyPollCall, ChunkCall, RegisterCall
from relay.store.keys import SINGLE, Keyspace
from relay.store.listings import Listings
from relay.store.scheduler import Claim, Scheduler
from relay.store.scripts import LuaScript

__all__ = ["CHUNK_JOBS", "ChunkRead", "DeliveryInfo", "PollInfo", "PollWritten", "Registration", "Store", "monitor_key"]

#: a monitor shared by more jobs than this is polled a chunk of about this many jobs at a time (poll_chunk.lua),
#: so that no script reads or writes more; its claim brings it without its jobs. Inside Redis a job costs ~10 µs
#: to read and a change with its event ~50-90 µs to write (AMD EPYC, 2 cores, busy): a step takes a few ms
CHUNK_JOBS = 32
#: the jobs one claim of monitors reads at most with them (beyond it, monitors come without their jobs)
CLAIM_JOBS = 400
#: the job changes one batched write of polls carries at most (a call carrying more goes alone)
WRITE_OPS = 128
#: a monitor's own fields at most, beside its jobs' (relay/core/schema.py Monitor)
_OWN_FIELDS = 32

log = structlog.stdlib.get_logger("relay.store")


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def monitor_key(url: str) -> str:
    """Jobs with the same monitor URL share one key, hence one poller; the URL itself is never a key.

    128 bits of its SHA-256 in base64url: 22 characters, written in three places per monitor.
    """
    # binascii and a translation table: what base64.urlsafe_b64encode does, without its two Python calls
    return (
        binascii.b2a_base64(hashlib.sha256(url.encode()).digest()[:16], newline=False).translate(_URLSAFE)[:22].decode()
    )


@dataclass(slots=True)  # not frozen: CONTRIBUTING.md (made on every registration)
class PollInfo:
    """What a job's view needs of its monitor: poll count, last poll and next due time (ms; None: none)."""

    polls: int = 0
    last_polled: int = 0
    due: float | None = None
    unreadable: tuple[str, ...] = ()  # ('monitor',) when its monitor's poll count or times did not read (0, None)


@dataclass(frozen=True, slots=True)
class DeliveryInfo:
    """Where a job's deliveries stand, for its view: its newest event, what waits, when the next attempt is due."""

    event_id: str
    type: str
    sequence: int
    state: str  # relay/core/schema.py EventState
    attempts: int
    waiting: int  # events in its outbox
    due: float | None  # ms, Redis clock: when its outbox is due (a claimed one: when the lease ends)
    held: bool  # a worker holds it: an attempt is under way
    last: dict[str, Any] | None  # the newest attempt record
    now: int  # ms, Redis clock
    unreadable: tuple[str, ...] = ()  # what of it did not read (read as defaults): 'event.seq', 'attempt'...

    @property
    def next_attempt(self) -> float | None:
        """When the next attempt starts (ms): now while one runs or is overdue; None when nothing waits."""
        if not self.waiting or self.due is None:
            return None
        return float(self.now) if self.held else max(self.due, float(self.now))


@dataclass(slots=True)
class PollWritten:
    """What a poll's write came to: nothing for a claim another worker took over (``stale``), else what each job
    change recorded ('ok', or why not: 'missing', 'terminal', 'stale'), in the order of the ops."""

    stale: bool
    applied: list[str]

    @classmethod
    def of(cls, answer: dict[str, Any]) -> PollWritten:
        """apply_poll.lua's answer (an empty list comes as ``{}``: Lua has one kind of table)."""
        if "stale" in answer:
            return cls(True, [])
        return cls(False, list(answer["applied"] or ()))


@dataclass(slots=True)
class ChunkRead:
    """One step of a poll in chunks: what the ops of the previous step recorded, and the next chunk of jobs."""

    applied: list[str]
    cursor: str  # where the next chunk starts; '0': this was the last one
    jobs: list[Job]


@dataclass(slots=True)  # not frozen: CONTRIBUTING.md (made on every operation)
class Registration:
    created: bool
    job_id: str
    digest: str  # the request digest stored with the idempotency key ('' without one)
    job: Job | None = None  # the new job; None when an earlier job was found
    info: PollInfo = dataclasses.field(default_factory=PollInfo)
    pending: bool = False  # the earlier registration under this key is still starting its action
    limited: str = ""  # nothing was created: the owner is over its limit of 'active' jobs or registration 'rate'


class Store(Listings):
    """The one door to Redis: every read and atomic write of jobs, monitors, events and schedules (listings
    and streams: :class:`relay.store.listings.Listings`)."""

    def __init__(
        self,
        redis: Redis,
        *,
        retention: float,
        job_timeout: float,
        first_poll: float = 1.0,
        chunk: int = CHUNK_JOBS,
        claim_jobs: int = CLAIM_JOBS,
        keyspace: Keyspace | None = None,
        dead_letters_max: int = 100_000,
    ) -> None:
        """``first_poll``: RELAY_POLL_INITIAL_INTERVAL (a job joining a monitor is polled within it); ``chunk``:
        the jobs a poll reads or writes in one script at most (about); ``claim_jobs``: those a claim reads;
        ``keyspace``: where keys live (by default: one bucket, or a cluster's buckets for a cluster client);
        ``dead_letters_max``: RELAY_DEAD_LETTERS_MAX (on a cluster, each bucket keeps its share)."""
        self.redis = redis
        if keyspace is None:
            keyspace = Keyspace.cluster() if isinstance(redis, RedisCluster) else SINGLE
        self.keyspace = ks = keyspace
        self.retention = int(retention)
        self.event_ttl = int(retention + job_timeout)
        self.chunk = chunk
        first_ms = max(0, int(first_poll * 1000))
        # claiming a monitor (a job with undelivered events) reads its state in the same step
        self.monitors = Scheduler(
            redis,
            keys.MONITORS,
            claim_script="claim_monitors.lua",
            claim_args={"inline": chunk + _OWN_FIELDS, "budget": claim_jobs},
            keyspace=ks,
        )
        self.deliveries = Scheduler(
            redis, keys.DELIVERIES, claim_script="claim_deliveries.lua", keyspace=ks, bucket_of=ks.bucket_of_job
        )
        # the hot writes: every call made in one event-loop iteration is one EVALSHA
        written = {"event_ttl": self.event_ttl, "retention": self.retention, "first_ms": first_ms}
        self._first_ms = first_ms
        self._register = BatchedScript(
            redis,
            LuaScript.load("register.lua"),
            shared={"index_horizon_ms": self.event_ttl * 1000, **written},
            keyspace=ks,
        )
        self._apply_poll = BatchedScript(
            redis,
            LuaScript.load("apply_poll.lua"),
            shared=written,
            answer=PollWritten.of,
            max_weight=WRITE_OPS,
            keyspace=ks,
        )
        self._poll_chunk = LuaScript.load("poll_chunk.lua")
        self._ack = BatchedScript(
            redis,
            LuaScript.load("delivery_ack.lua"),
            shared={
                "retention": self.retention,
                "event_ttl": self.event_ttl,
                "dead_max": -(-dead_letters_max // ks.buckets),
            },
            answer=_held,
            keyspace=ks,
        )
        self._reserve = LuaScript.load("reserve.lua")
        self._release = LuaScript.load("release.lua")
        self._apply_job = LuaScript.load("apply_job.lua")
        self._cancel = LuaScript.load("cancel.lua")
        self._patch = LuaScript.load("patch.lua")
        self._redeliver = LuaScript.load("redeliver.lua")
        self._job_info = LuaScript.load("job_info.lua")
        self._backlog = LuaScript.load("backlog.lua")
        self._quota = LuaScript.load("quota.lua")
        self._migrate_indexes = LuaScript.load("migrate_indexes.lua")
        self._admit = BatchedScript(
            redis,
            LuaScript.load("admit.lua"),
            shared={"pending_ttl": _PENDING_TTL, "index_horizon_ms": self.event_ttl * 1000},
            keyspace=ks,
        )
        self._read_events = LuaScript.load("events_after.lua")
        self._active: dict[str, tuple[float, int]] = {}  # a cluster's owner -> (when summed, active jobs)
        self._indexed = False
        self._indexing = asyncio.Lock()

    # -- registration and the API ------------------------------------------------------------

    async def register(
        self,
        job_id: str,
        fields: Job,
        monitor_url: str | None,
        *,
        sealed_url: str | None = None,
        first_op: JobOp | None = None,
        idempotency: tuple[str, str, str] | None = None,  # (owner, key digest, request digest)
        idempotency_ttl: int = 86400,
        limits: tuple[int, int] = (0, 0),  # (active jobs, registrations a second) the owner may have; 0: no limit
        max_monitor_jobs: int = 0,  # jobs its monitor may have, this one included; 0: no limit
    ) -> Registration:
        """Create the job, or find the one an idempotency key already made.

        The monitor's key is a digest of ``monitor_url``; what is stored is ``sealed_url`` (the URL encrypted:
        monitor URLs are bearer capabilities), or the URL itself when none is given. Without a monitor URL (an
        action that finished at once) the job has no monitor, and ``first_op`` records its events.
        """
        mkey = monitor_key(monitor_url) if monitor_url is not None else ""
        ks = self.keyspace
        idem_key = ks.idempotency(idempotency[0], idempotency[1]) if idempotency else ""
        digest = idempotency[2] if idempotency else ""
        stored_fields = dict(fields.fields)
        if mkey:
            stored_fields[Job.attrs["monitor_key"]] = mkey  # (looked up now: the stored names are chosen at start)
        stored = monitor_url if sealed_url is None else sealed_url
        clustered = ks.clustered
        if clustered:  # the id carries its bucket: its monitor's
            reserved_as = job_id
            job_id = ks.job_id_in(job_id, ks.bucket_of(mkey)) if mkey else job_id  # without: its own, random
        op = first_op.as_json() if first_op is not None else {}
        call = RegisterCall(
            job_id, stored_fields, mkey, stored or "", op, idem_key, idempotency_ttl, digest, *limits, max_monitor_jobs
        )
        if clustered:
            admitted = await self._admitted(call, stored_fields.get(_OWNER, ""), reserved_as)
            answer = admitted or await self._register_in_bucket(call)
        else:
            answer = await self._register.submit(call)  # (the future itself: a coroutine less than its __call__)
        outcome = answer["outcome"]
        if outcome == "limited":
            return Registration(created=False, job_id="", digest="", limited=answer["limit"])
        if outcome == "existing":
            return Registration(
                created=False, job_id=answer["job_id"], digest=answer["digest"], pending=answer["pending"]
            )
        if first_op is not None:
            created = await self.job(job_id)
            assert created is not None
            return Registration(created=True, job_id=job_id, digest=digest, job=created)
        created_at = int(answer["now"])
        job = (
            fields.as_stored(job_id, monitor_key=mkey, created=created_at)
            if mkey
            else fields.as_stored(job_id, created=created_at)
        )
        return Registration(created=True, job_id=job_id, digest=digest, job=job, info=_poll_info(answer))

    async def _admitted(self, call: RegisterCall, owner: str, reserved_as: str) -> dict[str, Any] | None:
        """A cluster's registration, its owner's part (admit.lua, in the owner's bucket): None when admitted, else
        the answer (an earlier job, or a limit). The job's own part then goes with ``call.admitted``."""
        ks = self.keyspace
        active = await self._owner_active(owner) if call.max_active > 0 else 0
        admit = {
            "owner": owner,
            "job_id": call.job_id,
            "reserved_as": reserved_as,
            "idempotency_key": call.idempotency_key,
            "digest": call.digest,
            "max_active": call.max_active,
            "active": active,
            "max_rate": call.max_rate,
        }
        answer: dict[str, Any] = await self._admit(admit, ks.bucket_of(owner))
        if answer["outcome"] != "admitted":
            return answer
        call.admitted, call.admitted_at = True, int(answer.get("created") or 0)
        if call.max_active > 0:  # this process's own admissions count until the next sum
            self._active[owner] = (self._active[owner][0], active + 1)
        return None

    async def _register_in_bucket(self, call: RegisterCall) -> dict[str, Any]:
        """A cluster's registration, the job's part (register.lua, admitted), then its Idempotency-Key confirmed
        (released when the job was not made)."""
        made = False
        try:
            answer: dict[str, Any] = await self._register(call, self.keyspace.bucket_of_job(call.job_id))
            made = answer["outcome"] == "created"
        finally:
            if call.idempotency_key and not made:
                await self._release(
                    self.redis,
                    {"idempotency_key": call.idempotency_key, "job_id": call.job_id},
                    anchor=self._idem_anchor(call.idempotency_key),
                )
        if call.idempotency_key:
            await self.redis.set(call.idempotency_key, f"{call.job_id} {call.digest}", ex=call.idempotency_ttl)
        return answer

    def _idem_anchor(self, key: str) -> str:
        """The anchor of an idempotency key's bucket (its owner's): the key's own prefix."""
        return key[: key.index("}:") + 2] + "~" if self.keyspace.clustered else keys.ANCHOR

    async def _owner_active(self, owner: str) -> int:
        """A cluster's count of the owner's active jobs: the sum over every bucket, read at most once a second
        per owner (one pipelined HGET per bucket: a round trip per node). RELAY_TENANT_MAX_ACTIVE_JOBS is
        approximate on a cluster: registrations within that second may pass it."""
        now = time.monotonic()
        seen = self._active.get(owner)
        if seen is not None and now - seen[0] < 1.0:
            return seen[1]
        async with self.redis.pipeline(transaction=False) as pipe:
            for active in self.keyspace.every(keys.ACTIVE):
                pipe.hget(active, owner)
            counts = await pipe.execute()
        total = sum(int(n or 0) for n in counts)
        if len(self._active) > 10_000:
            self._active.clear()
        self._active[owner] = (now, total)
        return total

    async def reserve(self, idempotency: tuple[str, str, str], job_id: str, ttl: int) -> Registration | None:
        """Hold an idempotency key while an action is started under it; the earlier holder when taken."""
        key = self.keyspace.idempotency(idempotency[0], idempotency[1])
        answer = await self._reserve(
            self.redis,
            {"idempotency_key": key, "job_id": job_id, "digest": idempotency[2], "ttl": ttl},
            anchor=self._idem_anchor(key),
        )
        holder = answer.get("holder")
        if holder is None:
            return None
        return Registration(created=False, job_id=holder["job_id"], digest=holder["digest"], pending=holder["pending"])

    async def take_quota(self, owner: str, limits: tuple[int, int]) -> str:
        """'' when one more registration is within the owner's limits (and counted), else 'active' or 'rate'."""
        call: dict[str, Any] = {"owner": owner, "max_active": limits[0], "max_rate": limits[1]}
        if self.keyspace.clustered and limits[0] > 0:
            call["active"] = await self._owner_active(owner)
        answer = await self._quota(self.redis, call, anchor=self.keyspace.anchor(self.keyspace.bucket_of(owner)))
        return str(answer.get("limit") or "")

    async def release(self, idempotency: tuple[str, str, str], job_id: str) -> None:
        """Let go of a reservation whose action started nothing."""
        key = self.keyspace.idempotency(idempotency[0], idempotency[1])
        await self._release(self.redis, {"idempotency_key": key, "job_id": job_id}, anchor=self._idem_anchor(key))

    async def job(self, job_id: str, *, lenient: bool = False) -> Job | None:
        """The job; ``lenient`` (what the API shows): a field that does not read is left at its default and named
        in the job's ``unreadable``, where it would raise."""
        data: dict[str, str] = await self.redis.hgetall(self.keyspace.job(job_id))  # type: ignore[misc]  # redis-py 5 types sync|async
        if not data:
            return None
        return Job.from_hash_lenient(job_id, data) if lenient else Job.from_hash(job_id, data)

    async def jobs(self, job_ids: list[str]) -> list[Job]:
        """The jobs that still exist, in the order asked, in one round trip; read leniently (the API's listings)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keyspace.job(job_id))
            rows = await pipe.execute()
        return [Job.from_hash_lenient(job_id, row) for job_id, row in zip(job_ids, rows, strict=True) if row]

    async def poll_info(self, job: Job) -> PollInfo:
        """The poll count, last poll and next due time of the job's monitor."""
        return (await self.job_info(job))[0]

    async def job_info(self, job: Job) -> tuple[PollInfo, DeliveryInfo | None]:
        """What the job's view shows besides the job: its monitor's polls, and where its deliveries stand (None
        before its first event), read in one step."""
        answer = await self._job_info(
            self.redis, {"monitor_key": job.monitor_key, "job_id": job.id}, anchor=self._anchor_of_job(job.id)
        )
        try:
            info = _poll_info(answer["monitor"])
        except ValueError:  # a damaged poll count or time in the monitor's hash: the view shows the rest
            info = PollInfo(unreadable=("monitor",))
        found = answer.get("delivery")
        if found is None:
            return info, None
        # the newest event's fields, read as its record reads them (one that does not read: its default, named)
        event = Event.from_hash_lenient(
            found["event_id"],
            {k: v for k, v in zip(_EVENT_SHOWN, _shown_of(found), strict=True) if v},
        )
        unreadable = [f"event.{name}" for name in event.unreadable]
        last = _json_object(found["record"]) if found["record"] else None
        if found["record"] and last is None:
            unreadable.append("attempt")
        delivery = DeliveryInfo(
            event_id=found["event_id"],
            type=event.type,
            sequence=event.sequence,
            state=event.state.value,
            attempts=event.attempts,
            waiting=int(found["waiting"]),
            due=float(found["due"]) if found["due"] else None,
            held=found["held"],
            last=last,
            now=int(found["now"]),
            unreadable=tuple(unreadable),
        )
        return info, delivery

    async def cancel(self, job_id: str) -> bool:
        answer = await self._cancel(
            self.redis, {"job_id": job_id, "retention": self.retention}, anchor=self._anchor_of_job(job_id)
        )
        return bool(answer["found"])

    async def patch(self, job_id: str, fields: Job) -> str:
        """'changed'; 'woken' (changed, and a job waiting for authorization woken); 'missing' (no such job); 'ended'
        (the job has ended: nothing changed)."""
        answer = await self._patch(
            self.redis, {"job_id": job_id, "fields": fields.fields}, anchor=self._anchor_of_job(job_id)
        )
        return str(answer["result"])

    async def attempts(self, job_id: str) -> list[dict[str, Any] | None]:
        """The job's delivery attempt records, oldest first; None for one that does not read (not a JSON object)."""
        raw = await self.redis.lrange(self.keyspace.job_attempts(job_id), 0, -1)  # type: ignore[misc]  # redis-py 5 types sync|async
        return [_json_object(r) for r in raw]

    async def event_ids(self, job_id: str) -> list[str]:
        return list(await self.redis.lrange(self.keyspace.job_events(job_id), 0, -1))  # type: ignore[misc]  # redis-py 5 types sync|async

    async def event(self, event_id: str, job_id: str = "") -> Event | None:
        """An event (in ``job_id``'s bucket; on a cluster without it, looked for in every bucket)."""
        return (await self.events([event_id], job_id))[0]

    async def events(self, event_ids: list[str], job_id: str = "") -> list[Event | None]:
        """Events by id, in the order asked (in ``job_id``'s bucket; on a cluster without it, looked for in every
        bucket: a round trip per node)."""
        if not event_ids:
            return []
        ks = self.keyspace
        if ks.clustered and not job_id:
            return [await self._event_anywhere(eid) for eid in event_ids]
        async with self.redis.pipeline(transaction=False) as pipe:
            for eid in event_ids:
                pipe.hgetall(ks.event(eid, job_id))
            rows = await pipe.execute()
        return [Event.from_hash_lenient(eid, row) if row else None for eid, row in zip(event_ids, rows, strict=True)]

    async def _event_anywhere(self, event_id: str) -> Event | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.keyspace.every(keys.event(event_id)):
                pipe.hgetall(key)
            rows = await pipe.execute()
        data = next((row for row in rows if row), None)
        return Event.from_hash_lenient(event_id, data) if data else None

    async def stats(self) -> dict[str, int]:
        """Counters and backlog sizes for /metrics, read in one round trip (a cluster's summed over its buckets:
        a round trip per node)."""
        ks = self.keyspace
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in ks.every(keys.STATS):
                pipe.hgetall(key)
            for key in ks.every(keys.DEAD_LETTERS):
                pipe.zcard(key)
            pipe.zcard(keys.ARQ_QUEUE)
            replies = await pipe.execute()
        n = ks.buckets
        queued = replies[-1]
        dead = sum(replies[n : 2 * n])
        monitors = await self.monitors.size()
        deliveries = await self.deliveries.size()
        out: dict[str, int] = {}
        for counters in replies[:n]:
            for name, value in counters.items():
                out[name] = out.get(name, 0) + int(value)
        out.update(monitors=monitors, deliveries=deliveries, dead=dead, queued=queued)
        return out

    async def redeliver(self, job_id: str, event_id: str) -> bool:
        answer = await self._redeliver(
            self.redis, {"job_id": job_id, "event_id": event_id}, anchor=self._anchor_of_job(job_id)
        )
        return bool(answer["found"])

    async def owner_indexes(self) -> None:
        """Once per process, before its first listing: what versions before per-owner indexes left in the shared
        ones (the jobs index, dead letters) is moved into each owner's (``migrate_indexes.lua``). A failure (Redis
        unreachable) fails this listing and the next one tries again."""
        if self._indexed or self.keyspace.clustered:  # a cluster never had the shared indexes
            return
        async with self._indexing:
            if not self._indexed:
                await self._move_to_owner_indexes()
                self._indexed = True

    async def _move_to_owner_indexes(self, batch: int = 1000) -> None:
        jobs = dead = 0
        more = True
        while more:
            moved = await self._migrate_indexes(self.redis, {"limit": batch})
            jobs, dead, more = jobs + moved["jobs"], dead + moved["dead"], moved["more"]
        if jobs or dead:
            log.info("moved to per-owner indexes", jobs_index_entries=jobs, dead_letters=dead)

    # -- the poller ---------------------------------------------------------------------------

    @staticmethod
    def monitor_state(claim: Claim) -> tuple[Monitor, list[Job] | None]:
        """A claimed monitor and the jobs sharing it, in id order (read by the claim itself); None for jobs too
        many to read with a claim: its poll reads the monitor's fields (:meth:`monitor`), then its jobs a chunk at
        a time (:meth:`poll_chunk`)."""
        state = claim.state
        if "crowded" in state:  # claim_monitors.lua
            return Monitor.from_hash(claim.member, {}), None
        monitor = Monitor.from_hash(claim.member, state["monitor"])
        jobs = [Job.from_hash(job_id, fields) for job_id, fields in state["jobs"].items()]
        jobs.sort(key=_by_id)
        return monitor, jobs

    async def monitor(self, member: str) -> Monitor:
        """A monitor's own fields (not its jobs'), read by the worker holding its lease."""
        names = sorted(Monitor.stored_names)
        values = await self.redis.hmget(self.keyspace.monitor(member), names)  # type: ignore[misc]  # redis-py 5 types sync|async
        return Monitor.from_hash(member, {n: v for n, v in zip(names, values, strict=True) if v is not None})

    async def monitor_job_ids(self, member: str) -> list[str]:
        """The ids of the jobs sharing a monitor (its ``j:`` fields), read a page at a time."""
        found = []
        skip = len(MONITOR_JOB_PREFIX)
        async for field, _ in self.redis.hscan_iter(self.keyspace.monitor(member), match=MONITOR_JOB_PREFIX + "*"):
            found.append(str(field)[skip:])
        return found

    async def strike(self, kind: str, member: str, ttl: int) -> int:
        """One more unexpected failure of ``member`` in a row (workers/backstop.py): how many now."""
        key = keys.strikes(kind, member)
        count = int(await self.redis.incr(key))  # only on the failure path: two round trips are no cost
        await self.redis.expire(key, ttl)
        return count

    async def clear_strikes(self, kind: str, member: str) -> None:
        await self.redis.delete(keys.strikes(kind, member))

    async def poll_chunk(
        self, claim: Claim, change: Monitor, ops: list[JobOp], cursor: str, lease_ms: int
    ) -> ChunkRead | None:
        """One step of a poll in chunks (poll_chunk.lua): ``change`` written to the monitor (the poll's answer, in
        its first step), ``ops`` (planned from the jobs the previous step read) applied, the next chunk read from
        ``cursor``; None when the claim was taken over."""
        call = ChunkCall(
            claim.member, claim.token, change.fields, [], [op.as_json() for op in ops], cursor, self.chunk, lease_ms
        )
        return await self._chunk_step(call)

    async def poll_chunk_last(
        self, claim: Claim, ops: list[JobOp], delay: float, jobs: int, lease_ms: int
    ) -> ChunkRead | None:
        """The last step of a poll in chunks: ``ops`` applied, the stored answer cleared, the lease let go and the
        monitor due after ``delay`` seconds (``jobs``: how many the poll read in all)."""
        op_records = [op.as_json() for op in ops]
        call = ChunkCall(claim.member, claim.token, {}, [_OUTCOME], op_records, "0", self.chunk, lease_ms)
        call.last, call.delay_ms, call.jobs = True, max(0, int(delay * 1000)), jobs
        return await self._chunk_step(call)

    async def _chunk_step(self, call: ChunkCall) -> ChunkRead | None:
        call.event_ttl, call.retention, call.first_ms = self.event_ttl, self.retention, self._first_ms
        anchor = self.keyspace.anchor(self.keyspace.bucket_of(call.member))
        answer = await self._poll_chunk(self.redis, call, anchor=anchor)
        if answer.get("stale"):
            return None
        jobs = [Job.from_hash(job_id, fields) for job_id, fields in answer["jobs"].items()]
        return ChunkRead(list(answer["applied"] or ()), answer["cursor"], jobs)

    @staticmethod
    def outbox_state(claim: Claim) -> tuple[Job | None, list[Event]]:
        """What delivering a claimed job needs of it (its callback, secret and owner) and its undelivered events
        in order, read by the claim itself; None for a job that has gone."""
        state = claim.state
        events = [Event.from_hash(event["id"], event["fields"]) for event in state["events"]]
        job = state["job"]
        callback = Job.attrs["callback_url"]  # every job has one, under either name: none, the job is gone
        if callback not in job and Job.other_names[callback] not in job:
            return None, events
        return Job.from_hash(claim.member, job), events

    @staticmethod
    def outbox_event_ids(claim: Claim) -> list[str]:
        """The ids of a claimed job's undelivered events, in order, as the claim read them, whether they read or not
        (the backstop's last resort when :meth:`outbox_state` fails)."""
        state = claim.state
        events = state.get("events") if isinstance(state, dict) else None
        return [str(event["id"]) for event in events or ()]

    def submit_poll(
        self,
        claim: Claim,
        monitor_change: Monitor,
        ops: list[JobOp],
        delay: float,
        *,
        jobs: int = 0,
        landed: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> asyncio.Future[PollWritten]:
        """Write a poll's outcome if the claim is still ours, handed over without waiting (write-behind); the
        future gets what the write came to (:class:`PollWritten`).
        ``jobs``: how many jobs the claim read (0, the default: the script checks whether any are left);
        ``landed``: called with the future once it is set (:meth:`BatchedScript.submit`)."""
        self.monitors.handed_back(delay, claim.bucket)
        call = ApplyPollCall(
            claim.member,
            claim.token,
            max(0, int(delay * 1000)),
            monitor_change.fields,
            [op.as_json() for op in ops],
            jobs,
        )
        return self._apply_poll.submit(call, weight=max(1, len(ops)), bucket=claim.bucket, landed=landed)

    @property
    def write_backlog(self) -> int:
        """Poll writes and delivery acks handed over and not yet answered."""
        return self._apply_poll.backlog + self._ack.backlog

    async def drain(self) -> None:
        """Until every poll write and delivery ack handed over has been answered (a worker's shutdown)."""
        await self._apply_poll.drain()
        await self._ack.drain()

    async def apply_job(self, op: JobOp) -> str:
        call = {"op": op.as_json(), "event_ttl": self.event_ttl, "retention": self.retention}
        anchor = self._anchor_of_job(op.job)
        return str((await self._apply_job(self.redis, call, anchor=anchor))["result"])

    # -- the delivery loop --------------------------------------------------------------------

    def submit_ack(
        self,
        claim: Claim,
        *,
        event_id: str,
        outcome: DeliveryOutcome,
        delay: float = 0.0,
        superseded: list[str] | None = None,
        records: list[dict[str, Any]] | None = None,
        error: dict[str, Any] | None = None,
        landed: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> asyncio.Future[bool]:
        """The ack handed over without waiting (write-behind); the future's answer: whether the claim was ours.
        ``landed``: called with the future once it is set (:meth:`BatchedScript.submit`)."""
        self.deliveries.handed_back(delay, claim.bucket)
        call = AckCall(
            claim.member,
            claim.token,
            event_id,
            outcome,
            max(0, int(delay * 1000)),
            superseded or [],
            [jsonfast.dumps(r).decode() for r in records] if records else [],  # stored as JSON texts
            jsonfast.dumps(error).decode() if error else "{}",
        )
        return self._ack.submit(call, bucket=claim.bucket, landed=landed)

    def _anchor_of_job(self, job_id: str) -> str:
        return self.keyspace.anchor(self.keyspace.bucket_of_job(job_id))


#: seconds a cluster's Idempotency-Key stays pending between its admission and its job's registration
_PENDING_TTL = 60
#: names of fields never renamed (a renamed one's stored name is chosen at start: schema.write_legacy_names)
_OWNER = Job.name_of(lambda j: j.owner)
_OUTCOME = Monitor.name_of(lambda m: m.outcome)


#: the newest event's fields job_info.lua answers (type, sequence, state, attempts), by their stored names
_EVENT_SHOWN = Event.names_of(lambda e: (e.type, e.sequence, e.state, e.attempts))


def _shown_of(found: dict[str, Any]) -> tuple[str, str, str, str]:
    return (found["type"], found["sequence"], found["state"], found["attempts"])


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _poll_info(polled: dict[str, Any]) -> PollInfo:
    """A monitor's {polls, last_polled, due} as a script answers them ('' for none)."""
    due = polled["due"]
    return PollInfo(int(polled["polls"] or 0), int(polled["last_polled"] or 0), float(due) if due else None)


def _held(answer: dict[str, Any]) -> bool:
    return bool(answer["held"])


def _by_id(job: Job) -> str:
    return job.id
