"""Due-time scheduling in Redis: the one small interface every periodic piece of work goes through.

A schedule is a set of members scored by their due time (ms, Redis clock), split into lanes (one per API
tenant, so claims share out fairly: ``lua/lib/lanes.lua``), plus a hash of claim tokens. ``claim`` atomically
takes due members and pushes their score to ``now + lease``: if the claiming worker dies, the member simply
comes due again when the lease runs out. A stale worker cannot overwrite a newer schedule because every write
checks its claim token.

On a Redis Cluster a schedule is kept per bucket (:class:`relay.store.keys.Keyspace`), inside the bucket's scripts,
and a claim takes members across buckets without a round trip per empty bucket (docs/cluster-design.md, "Claiming
across buckets"): each process keeps a view of every bucket's earliest due time, kept fresh by the claims' own
answers, by the members it hands back, and by a sweep of every bucket's ``:lanes`` (one pipelined ``ZRANGE 0 0`` per
node) every :data:`SWEEP` seconds and after a wake-up; a claim round sends one claim script to each due bucket, all
of a node's in one pipeline. On one Redis the view has one bucket, never swept: a claim is one script, as ever.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from relay.store import keys
from relay.store.keys import SINGLE, Keyspace
from relay.store.scripts import LuaScript, encode_call, run_many

__all__ = ["ROUNDS", "SHARE", "SWEEP", "Claim", "ClaimBatch", "Scheduler"]

#: seconds between two sweeps of a cluster's buckets (what a lost wake-up can delay work by at most)
SWEEP = 2.0
#: a cluster's claim asks each bucket for this many members at least (fewer scripts when many buckets are due)
SHARE = 8
#: claim rounds one claim makes at most (each one pipeline: one send per node)
ROUNDS = 3

_SCHEDULE = LuaScript.load("schedule.lua")
_BACKLOG = LuaScript.load("backlog.lua")


@dataclass(slots=True)  # not frozen: CONTRIBUTING.md (made on every operation)
class Claim:
    member: str
    token: str  # "<lane>|<claim>:<n>": the lane the member is in travels with its claim
    now_ms: int  # Redis clock at claim time
    state: Any = None  # what the schedule's loader read for the member, in the same atomic step
    bucket: int = 0  # the bucket it was claimed in (a cluster's; 0 on one Redis): its writes go there


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    claims: list[Claim]
    next_due_in: float | None  # seconds until the earliest member left comes due; None: the schedule is empty


class Scheduler:
    """One named schedule (e.g. monitors, deliveries).

    ``claim_script``: a claim that also reads each member's state (``claim_monitors.lua``...) and knows its
    schedule's key; without one, ``claim.lua`` claims members of ``key`` alone.
    """

    def __init__(
        self,
        redis: Redis,
        key: str,
        *,
        claim_script: str | None = None,
        claim_args: Mapping[str, Any] | None = None,
        keyspace: Keyspace = SINGLE,
        bucket_of: Callable[[str], int] | None = None,
    ) -> None:
        """``claim_args``: what ``claim_script``'s call holds beside the limit, the lease and the claim's id;
        ``bucket_of``: a member's bucket (a cluster's; by default the bucket of a digest of the member)."""
        self.redis = redis
        self.keyspace = keyspace
        self.bucket_of = bucket_of or keyspace.bucket_of
        self.key = key
        self.tokens_key = keys.sched_tokens(key)
        self._stateful = claim_script is not None
        self._claim = LuaScript.load(claim_script or "claim.lua")
        self._claim_args = dict(claim_args or {})
        #: each bucket's earliest due time as this process last saw it (monotonic seconds; inf: empty)
        self._due = [0.0] * keyspace.buckets
        self._swept = -math.inf  # when the buckets were last swept (monotonic)
        self._lanes = keyspace.every(keys.sched_lanes(key))
        self._clock_ms = 0.0  # Redis clock minus this process's wall clock (ms), as the last claim saw them
        self.round_trips = 0  # pipelines sent by claims and sweeps (a cluster's measure)
        #: when a member this process handed back comes due (monotonic seconds): a claimed member's new due
        #: time wakes no other worker (lua/lib/lanes.lua), so this process's claim loop wakes itself
        self.handed_back_due = math.inf
        #: called with that time when it moves earlier (a claim loop sleeping past it wakes up)
        self.on_handed_back: Callable[[float], None] | None = None

    def handed_back(self, delay: float, bucket: int = 0) -> None:
        """A member this process claimed (in ``bucket``) is due again after ``delay`` seconds."""
        due = time.monotonic() + delay
        if due < self._due[bucket]:
            self._due[bucket] = due
        if due < self.handed_back_due:
            self.handed_back_due = due
            if self.on_handed_back is not None:
                self.on_handed_back(due)

    async def claim(self, limit: int, lease: float) -> list[Claim]:
        """Take up to ``limit`` due members, a fair share from each lane, leasing each for ``lease`` seconds."""
        return (await self.claim_batch(limit, lease)).claims

    async def claim_batch(self, limit: int, lease: float) -> ClaimBatch:
        """:meth:`claim`, and how long until the earliest member left comes due (for an idle claimer to sleep)."""
        call = {"limit": limit, "lease_ms": int(lease * 1000), "claim_id": uuid.uuid4().hex, **self._claim_args}
        self.handed_back_due = math.inf  # what was handed back so far counts in the claim's next due time
        if self.keyspace.clustered:
            return await self._claim_buckets(call, limit)
        if not self._stateful:
            call["schedule"] = self.key
        self.round_trips += 1
        answer = await self._claim(self.redis, call)
        now_ms, next_due = int(answer["now"]), answer["next_due"]
        # (no claims come as {}: Lua has one kind of table)
        claims = [Claim(c["member"], c["token"], now_ms, c.get("state")) for c in answer["claims"] or ()]
        wait = max(0.0, (float(next_due) - now_ms) / 1000) if next_due else None
        return ClaimBatch(claims, wait)

    def woken(self) -> None:
        """A wake-up came (or may have been missed): the next claim sweeps the buckets first."""
        self._swept = -math.inf

    async def sweep(self) -> None:
        """Every bucket's earliest due time, read again (one pipelined ``ZRANGE 0 0`` per node)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for lanes in self._lanes:
                pipe.zrange(lanes, 0, 0, withscores=True)
            firsts = await pipe.execute()
        self.round_trips += 1
        now, wall_ms = time.monotonic(), time.time() * 1000 + self._clock_ms
        self._swept = now
        for bucket, first in enumerate(firsts):
            self._due[bucket] = now + (float(first[0][1]) - wall_ms) / 1000 if first else math.inf

    async def _claim_buckets(self, call: dict[str, Any], limit: int) -> ClaimBatch:
        """A cluster's claim: a round sends one claim script to each of the buckets due in the view, the most
        overdue first, the limit shared out between them, all of a node's in one pipeline. The first round asks a
        few buckets for :data:`SHARE` members each (a busy cluster's claim is a few scripts, not one per member);
        while the limit is not reached, the next rounds (up to :data:`ROUNDS`) ask every bucket still due that this
        claim has not emptied (a lightly loaded cluster's few members spread over many buckets)."""
        if time.monotonic() - self._swept >= SWEEP:
            await self.sweep()
        claims: list[Claim] = []
        emptied: set[int] = set()  # buckets that had less due than their share
        for round_ in range(ROUNDS):
            now = time.monotonic()
            due = [b for at, b in sorted((at, b) for b, at in enumerate(self._due)) if at <= now and b not in emptied]
            left = limit - len(claims)
            if not due or left <= 0:
                break
            # the first round asks a few buckets for several members each; the next ones every bucket still due
            wide = left if round_ else max(1, left // SHARE)
            emptied |= await self._claim_round(call, due[:wide], left, claims)
        earliest = min(self._due)
        wait = None if earliest == math.inf else max(0.0, earliest - time.monotonic())
        # an idle process looks again at least every sweep (what a lost wake-up would have said)
        return ClaimBatch(claims, SWEEP if wait is None else min(wait, SWEEP))

    async def _claim_round(self, call: dict[str, Any], chosen: list[int], limit: int, claims: list[Claim]) -> set[int]:
        """One round: ``limit`` shared out over the ``chosen`` buckets; those that had less due than their share."""
        share, extra = divmod(limit, len(chosen))  # the most overdue buckets get the rest of the limit
        runs, shares = [], []
        for i, bucket in enumerate(chosen):
            one = {**call, "limit": share + (i < extra)}
            if not self._stateful:
                one["schedule"] = self.keyspace.in_bucket(self.key, bucket)
            runs.append((self.keyspace.anchor(bucket), [encode_call(one)]))
            shares.append(one["limit"])
        answers = await run_many(self.redis, self._claim, runs)
        self.round_trips += 1
        failed: Exception | None = None
        emptied: set[int] = set()
        for bucket, wanted, raw in zip(chosen, shares, answers, strict=True):
            if isinstance(raw, Exception):  # a refused bucket (moving, failing over): the next claim tries it
                failed = failed or raw
                emptied.add(bucket)
                continue
            answer = orjson.loads(raw)
            now_ms, next_due = int(answer["now"]), answer["next_due"]
            self._clock_ms = now_ms - time.time() * 1000
            taken = answer["claims"] or ()
            for c in taken:
                claims.append(Claim(c["member"], c["token"], now_ms, c.get("state"), bucket))
            if len(taken) < wanted:
                emptied.add(bucket)
            after = time.monotonic()
            self._due[bucket] = after + max(0.0, (float(next_due) - now_ms) / 1000) if next_due else math.inf
        if failed is not None and not claims:
            raise failed
        return emptied

    def next_due_in(self, claimed: ClaimBatch) -> float | None:
        """Seconds until something is due: the claim's answer, or sooner what this process handed back since."""
        handed_back = self.handed_back_due - time.monotonic()
        if claimed.next_due_in is None:
            return None if handed_back == math.inf else max(0.0, handed_back)
        return max(0.0, min(claimed.next_due_in, handed_back))

    async def reschedule(self, claim: Claim, delay: float) -> bool:
        """Release the lease, due again after ``delay`` seconds; False if the claim went stale."""
        self.handed_back(delay, claim.bucket)
        call = {"action": "reschedule", "member": claim.member, "token": claim.token, "delay_ms": _ms(delay)}
        return bool((await self._schedule(claim.bucket, call))["done"])

    async def finish(self, claim: Claim) -> bool:
        """Release the lease and drop the member; False if the claim went stale."""
        call = {"action": "finish", "member": claim.member, "token": claim.token}
        return bool((await self._schedule(claim.bucket, call))["done"])

    async def add(self, member: str, delay: float = 0.0, *, only_new: bool = False, lane: str = "") -> None:
        call = {"action": "add", "member": member, "lane": lane, "delay_ms": _ms(delay), "only_new": only_new}
        await self._schedule(self.bucket_of(member), call)

    async def _schedule(self, bucket: int, call: dict[str, Any]) -> Any:
        schedule = self.keyspace.in_bucket(self.key, bucket)
        return await _SCHEDULE(self.redis, {"schedule": schedule, **call}, anchor=self.keyspace.anchor(bucket))

    async def size(self) -> int:
        """Members scheduled, over all lanes (and every bucket)."""
        if not self.keyspace.clustered:
            return int((await _BACKLOG(self.redis, {"schedule": self.key}))["members"])
        runs = [
            (self.keyspace.anchor(b), [encode_call({"schedule": self.keyspace.in_bucket(self.key, b)})])
            for b in range(self.keyspace.buckets)
        ]
        total = 0
        for raw in await run_many(self.redis, _BACKLOG, runs):
            if isinstance(raw, Exception):
                raise raw
            total += int(orjson.loads(raw)["members"])
        return total

    async def due_at(self, member: str, lane: str = "") -> float | None:
        """Due time in seconds since the epoch, or None when not scheduled."""
        schedule = self.keyspace.in_bucket(self.key, self.bucket_of(member))
        score = await self.redis.zscore(keys.sched_lane(schedule, lane) if lane else schedule, member)
        return None if score is None else score / 1000.0


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))
