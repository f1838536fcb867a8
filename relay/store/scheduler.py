"""Due-time scheduling in Redis: the one small interface every periodic piece of work goes through.

A schedule is a set of members scored by their due time (ms, Redis clock), split into lanes (one per API
tenant, so claims share out fairly: ``lua/lib/lanes.lua``), plus a hash of claim tokens. ``claim`` atomically
takes due members and pushes their score to ``now + lease``: if the claiming worker dies, the member simply
comes due again when the lease runs out. A stale worker cannot overwrite a newer schedule because every write
checks its claim token.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from relay.store import keys
from relay.store.scripts import LuaScript

__all__ = ["Claim", "ClaimBatch", "Scheduler"]

_SCHEDULE = LuaScript.load("schedule.lua")
_BACKLOG = LuaScript.load("backlog.lua")


@dataclass(slots=True)  # not frozen: CONTRIBUTING.md (made on every operation)
class Claim:
    member: str
    token: str  # "<lane>|<claim>:<n>": the lane the member is in travels with its claim
    now_ms: int  # Redis clock at claim time
    state: Any = None  # what the schedule's loader read for the member, in the same atomic step


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
        self, redis: Redis, key: str, *, claim_script: str | None = None, claim_args: Mapping[str, Any] | None = None
    ) -> None:
        """``claim_args``: what ``claim_script``'s call holds beside the limit, the lease and the claim's id."""
        self.redis = redis
        self.key = key
        self.tokens_key = keys.sched_tokens(key)
        self._stateful = claim_script is not None
        self._claim = LuaScript.load(claim_script or "claim.lua")
        self._claim_args = dict(claim_args or {})
        if not self._stateful:
            self._claim_args["schedule"] = key
        #: when a member this process handed back comes due (monotonic seconds): a claimed member's new due
        #: time wakes no other worker (lua/lib/lanes.lua), so this process's claim loop wakes itself
        self.handed_back_due = math.inf
        #: called with that time when it moves earlier (a claim loop sleeping past it wakes up)
        self.on_handed_back: Callable[[float], None] | None = None

    def handed_back(self, delay: float) -> None:
        """A member this process claimed is due again after ``delay`` seconds."""
        due = time.monotonic() + delay
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
        answer = await self._claim(self.redis, call)
        now_ms, next_due = int(answer["now"]), answer["next_due"]
        # (no claims come as {}: Lua has one kind of table)
        claims = [Claim(c["member"], c["token"], now_ms, c.get("state")) for c in answer["claims"] or ()]
        wait = max(0.0, (float(next_due) - now_ms) / 1000) if next_due else None
        return ClaimBatch(claims, wait)

    def next_due_in(self, claimed: ClaimBatch) -> float | None:
        """Seconds until something is due: the claim's answer, or sooner what this process handed back since."""
        handed_back = self.handed_back_due - time.monotonic()
        if claimed.next_due_in is None:
            return None if handed_back == math.inf else max(0.0, handed_back)
        return max(0.0, min(claimed.next_due_in, handed_back))

    async def reschedule(self, claim: Claim, delay: float) -> bool:
        """Release the lease, due again after ``delay`` seconds; False if the claim went stale."""
        self.handed_back(delay)
        call = {"schedule": self.key, "action": "reschedule", "member": claim.member, "token": claim.token}
        return bool((await _SCHEDULE(self.redis, {**call, "delay_ms": _ms(delay)}))["done"])

    async def finish(self, claim: Claim) -> bool:
        """Release the lease and drop the member; False if the claim went stale."""
        call = {"schedule": self.key, "action": "finish", "member": claim.member, "token": claim.token}
        return bool((await _SCHEDULE(self.redis, call))["done"])

    async def add(self, member: str, delay: float = 0.0, *, only_new: bool = False, lane: str = "") -> None:
        call = {"schedule": self.key, "action": "add", "member": member, "lane": lane, "delay_ms": _ms(delay)}
        await _SCHEDULE(self.redis, {**call, "only_new": only_new})

    async def size(self) -> int:
        """Members scheduled, over all lanes."""
        return int((await _BACKLOG(self.redis, {"schedule": self.key}))["members"])

    async def due_at(self, member: str, lane: str = "") -> float | None:
        """Due time in seconds since the epoch, or None when not scheduled."""
        score = await self.redis.zscore(keys.sched_lane(self.key, lane) if lane else self.key, member)
        return None if score is None else score / 1000.0


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))
