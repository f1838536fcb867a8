"""The reads behind listings and streams: the jobs index, event streams, change fingerprints, dead letters.

Part of the one door to Redis, :class:`relay.store.jobs.Store` (which is a :class:`Listings`): reads only; every
write is a script of the store's. On a Redis Cluster they answer as on one Redis (same order, cursors, limits): an
owner's index is one stream in the owner's bucket, a job's keys are in its bucket, and an owner's dead letters, kept
per bucket, are merged (the newest of each bucket, one pipelined read: a round trip per node).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from relay.core.schema import Event, EventState, Job
from relay.store import keys
from relay.store.keys import Keyspace
from relay.store.scripts import LuaScript

__all__ = ["DeadLetterRow", "EventPage", "Listings"]

#: a listing request looks at no more than this many of the owner's index entries (expired jobs' included)
MAX_SCAN = 5000
#: index entries a filtered listing reads (and whose jobs it tests) at a time
_MATCH_BATCH = 200
#: dead letters read beyond those asked for, in case some are stale (expired, or redelivered by an older version)
_DEAD_SLACK = 20
#: what a change of a job shows in: the stream of a caller's jobs sends the job again when these differ
_MARK_FIELDS = Job.names_of(lambda j: (j.owner, j.sequence, j.status, j.percentage, j.terminal, j.resource_id, j.phase))
_TERMINAL = Job.name_of(lambda j: j.terminal)
_EVENT_SHOWN = Event.names_of(lambda e: (e.type, e.body, e.created))
_DEAD_SHOWN = Event.names_of(lambda e: (e.job, e.type, e.sequence, e.attempts, e.state))


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events of a job after a position in its event list, read as one snapshot with the job's state."""

    events: list[tuple[str, str, str, int]]  # (event id, type, body, created ms); expired ones left out
    read: int  # how many list entries were read (expired ones included)
    ended: bool  # the job has ended or gone


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    event_id: str
    job_id: str
    type: str
    sequence: int
    attempts: int
    dead_ms: float
    unreadable: tuple[str, ...] = ()  # the event's stored fields that did not read (shown at their defaults)


class Listings:
    """The store's listing reads (:class:`relay.store.jobs.Store` is one)."""

    redis: Redis
    keyspace: Keyspace

    if TYPE_CHECKING:
        _read_events: LuaScript

        async def jobs(self, job_ids: list[str]) -> list[Job]: ...

        async def owner_indexes(self) -> None: ...

    async def owned_jobs(
        self, owner: str, limit: int, end: str, match: Callable[[Job], bool] | None = None
    ) -> tuple[list[Job], str | None]:
        """Up to ``limit`` of ``owner``'s jobs (those ``match`` accepts, when given), newest first, from entry ``end``
        ('+' or '(<id>') of the owner's index, and the cursor of the next page. The cursor is the entry id of the last
        job looked at (its creation time); an expired job's entry still orders the rest, so a cursor outlives the job it
        names. Other owners' jobs are in indexes of their own: neither what this reads nor the cursor it gives depends
        on them."""
        await self.owner_indexes()
        index = self.keyspace.owner_jobs(owner)
        if match is not None:
            return await self._matching(index, limit, end, match)
        redis = self.redis
        found: list[Job] = []
        last: str | None = None
        scanned = 0
        while len(found) < limit and scanned < MAX_SCAN:
            wanted = limit - len(found)
            # one entry more than is wanted says whether a next page exists, without asking again
            batch: list[tuple[str, dict[str, str]]] = await redis.xrevrange(index, end, "-", wanted + 1)
            taken = batch[:wanted]
            if not taken:
                return found, None
            scanned += len(taken)
            found.extend(await self.jobs([entry["j"] for _, entry in taken]))
            last = taken[-1][0]
            if len(batch) <= wanted:
                return found, None
            end = f"({last}"
        return found, last

    async def _matching(
        self, index: str, limit: int, end: str, match: Callable[[Job], bool]
    ) -> tuple[list[Job], str | None]:
        """:func:`owned_jobs` with a filter: every job of the index is read (a batch at a time) and tested, up to
        MAX_SCAN entries a page; a page may then hold fewer than ``limit`` jobs while its cursor is not None."""
        found: list[Job] = []
        last: str | None = None
        scanned = 0
        while scanned < MAX_SCAN:
            batch: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(index, end, "-", _MATCH_BATCH)
            if not batch:
                return found, None
            scanned += len(batch)
            jobs = {job.id: job for job in await self.jobs([entry["j"] for _, entry in batch])}
            for entry_id, entry in batch:
                last = entry_id
                job = jobs.get(entry["j"])
                if job is not None and match(job):
                    found.append(job)
                    if len(found) == limit:
                        more = await self.redis.xrevrange(index, f"({entry_id}", "-", 1)
                        return found, entry_id if more else None
            if len(batch) < _MATCH_BATCH:
                return found, None
            end = f"({last}"
        return found, last

    async def index_top(self, owner: str) -> str:
        """The newest entry id of ``owner``'s index ('0-0' when empty)."""
        await self.owner_indexes()
        top: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(self.keyspace.owner_jobs(owner), "+", "-", 1)
        return top[0][0] if top else "0-0"

    async def owned_since(self, owner: str, after: str) -> tuple[list[tuple[str, str]], str]:
        """``owner``'s jobs registered after entry ``after`` of its index: (job id, entry id) pairs, and the newest
        entry."""
        fresh: list[tuple[str, dict[str, str]]] = await self.redis.xrange(
            self.keyspace.owner_jobs(owner), f"({after}", "+", MAX_SCAN
        )
        if not fresh:
            return [], after
        return [(entry["j"], entry_id) for entry_id, entry in fresh], fresh[-1][0]

    async def change_marks(self, job_ids: list[str]) -> list[tuple[str | None, ...]]:
        """Per job, what a change shows in (owner first: None when the job has expired) and its attempt count."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.keyspace.job(job_id), _MARK_FIELDS)
                pipe.llen(self.keyspace.job_attempts(job_id))
            replies = await pipe.execute()
        return [(*replies[2 * i], replies[2 * i + 1]) for i in range(len(job_ids))]

    async def event_position(self, job_id: str, event_id: str) -> int:
        """The position just after ``event_id`` in the job's event list (0 when it is not there)."""
        ids: list[str] = await self.redis.lrange(self.keyspace.job_events(job_id), 0, -1)  # type: ignore[misc]  # redis-py 5 types sync|async
        return ids.index(event_id) + 1 if event_id in ids else 0

    async def events_after(self, job_id: str, position: int) -> EventPage:
        if self.keyspace.clustered:  # a cluster refuses MULTI: one read script in the job's bucket
            return await self._events_after_script(job_id, position)
        redis = self.redis
        async with redis.pipeline(transaction=True) as pipe:  # one snapshot: terminal flag and events agree
            pipe.hget(keys.job(job_id), _TERMINAL)
            pipe.exists(keys.job(job_id))
            pipe.lrange(keys.job_events(job_id), position, -1)
            terminal, exists, new_ids = await pipe.execute()
        rows = []
        if new_ids:
            async with redis.pipeline(transaction=False) as pipe:
                for event_id in new_ids:
                    pipe.hmget(keys.event(event_id), _EVENT_SHOWN)
                rows = await pipe.execute()
        events = [
            (eid, kind or "", body, _ms(created))
            for eid, (kind, body, created) in zip(new_ids, rows, strict=True)
            if body
        ]
        return EventPage(events, len(new_ids), terminal == "1" or not exists)

    async def _events_after_script(self, job_id: str, position: int) -> EventPage:
        call = {"job_id": job_id, "position": position, "fields": _EVENT_SHOWN}
        ks = self.keyspace
        answer = await self._read_events(self.redis, call, anchor=ks.anchor(ks.bucket_of_job(job_id)))
        events = [
            (found["id"], kind, body, _ms(created))
            for found in answer["events"] or ()
            for kind, body, created in (found["values"],)
            if body
        ]
        return EventPage(events, int(answer["read"]), bool(answer["ended"]))

    async def dead_letters(self, owner: str, limit: int) -> list[DeadLetterRow]:
        """``owner``'s dead-lettered events, newest first (from its own index: others' cost nothing here)."""
        await self.owner_indexes()
        redis = self.redis
        ks = self.keyspace
        # a few more than asked: one redelivered by an older version, or expired, is skipped
        wanted = limit + _DEAD_SLACK
        async with redis.pipeline(transaction=False) as pipe:
            for bucket in range(ks.buckets):
                pipe.zrevrange(ks.owner_dead_letters(owner, bucket), 0, wanted - 1, withscores=True)
            per_bucket: list[list[tuple[str, float]]] = await pipe.execute()
        # merged as ZREVRANGE orders one set: by score, then by member, both descending
        dead = sorted(
            ((event_id, score, bucket) for bucket, rows in enumerate(per_bucket) for event_id, score in rows),
            key=_newest_first,
            reverse=True,
        )[:wanted]
        if not dead:
            return []
        async with redis.pipeline(transaction=False) as pipe:
            for event_id, _, bucket in dead:
                pipe.hmget(ks.in_bucket(keys.event(event_id), bucket), _DEAD_SHOWN)
            events = await pipe.execute()
        out: list[DeadLetterRow] = []
        for (event_id, score, _), values in zip(dead, events, strict=True):
            # read leniently: a field damaged in Redis shows its default and is named, the rest is listed
            stored = {k: v for k, v in zip(_DEAD_SHOWN, values, strict=True) if v is not None}
            event = Event.from_hash_lenient(event_id, stored)
            if event.job and event.state is EventState.DEAD:
                row = DeadLetterRow(
                    event_id, event.job, event.type, event.sequence, event.attempts, score, event.unreadable
                )
                out.append(row)
                if len(out) == limit:
                    break
        return out


def _ms(created: str | None) -> int:
    """An event's creation time (ms); 0 when absent or damaged in Redis (a stream goes on without it)."""
    try:
        return int(created or 0)
    except ValueError:
        return 0


def _newest_first(row: tuple[str, float, int]) -> tuple[float, str]:
    return row[1], row[0]
