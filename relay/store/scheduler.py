"""Due-time scheduling in Redis: the one small interface every periodic piece of work goes through.

A schedule is a sorted set of members scored by their due time (ms, Redis clock) plus a hash of
claim tokens. ``claim`` atomically takes due members and pushes their score to ``now + lease``:
if the claiming worker dies, the member simply comes due again when the lease runs out. A
stale worker cannot overwrite a newer schedule because every write checks its claim token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from relay.store import keys

__all__ = ["Claim", "Scheduler"]

# Redis TIME in ms; shared by every script below
NOW_MS = """
local __t = redis.call('TIME')
local now = tonumber(__t[1]) * 1000 + math.floor(tonumber(__t[2]) / 1000)
"""

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {tostring(now)}
for i, member in ipairs(due) do
  local token = ARGV[3] .. ':' .. i
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), member)
  redis.call('HSET', KEYS[2], member, token)
  out[#out + 1] = member
  out[#out + 1] = token
  if load_state then out[#out + 1] = load_state(member, ARGV[4]) end
end
return out
"""

_RESCHEDULE = (
    NOW_MS
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if tonumber(ARGV[3]) < 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
end
return 1
"""
)

_ADD = (
    NOW_MS
    + """
if ARGV[3] == 'nx' then
  return redis.call('ZADD', KEYS[1], 'NX', now + tonumber(ARGV[2]), ARGV[1])
end
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
"""
)


@dataclass(frozen=True, slots=True)
class Claim:
    member: str
    token: str
    now_ms: int  # Redis clock at claim time
    state: Any = None  # what the schedule's loader read for the member, in the same atomic step


class Scheduler:
    """One named schedule (e.g. monitors, deliveries).

    ``loader`` is Lua defining ``load_state(member, prefix)``: the claim then returns, with each
    member, what it read (the member's state), so claiming and reading cost one round trip.
    """

    def __init__(self, redis: Redis, key: str, *, loader: str | None = None) -> None:
        self.redis = redis
        self.key = key
        self.tokens_key = keys.sched_tokens(key)
        self._stride = 2 if loader is None else 3
        self._claim = redis.register_script(NOW_MS + (loader or "local load_state = nil\n") + _CLAIM)
        self._reschedule = redis.register_script(_RESCHEDULE)
        self._add = redis.register_script(_ADD)

    async def claim(self, limit: int, lease: float) -> list[Claim]:
        """Take up to ``limit`` due members, leasing each for ``lease`` seconds."""
        prefix = uuid.uuid4().hex
        raw: list[Any] = await self._claim(
            keys=[self.key, self.tokens_key], args=[limit, int(lease * 1000), prefix, keys.PREFIX]
        )
        now_ms = int(raw[0])
        if self._stride == 2:
            return [Claim(_s(raw[i]), _s(raw[i + 1]), now_ms) for i in range(1, len(raw), 2)]
        return [Claim(_s(raw[i]), _s(raw[i + 1]), now_ms, raw[i + 2]) for i in range(1, len(raw), 3)]

    async def reschedule(self, claim: Claim, delay: float) -> bool:
        """Release the lease, due again after ``delay`` seconds; False if the claim went stale."""
        return bool(
            await self._reschedule(keys=[self.key, self.tokens_key], args=[claim.member, claim.token, _ms(delay)])
        )

    async def finish(self, claim: Claim) -> bool:
        """Release the lease and drop the member; False if the claim went stale."""
        return bool(await self._reschedule(keys=[self.key, self.tokens_key], args=[claim.member, claim.token, -1]))

    async def add(self, member: str, delay: float = 0.0, *, only_new: bool = False) -> None:
        await self._add(keys=[self.key], args=[member, _ms(delay), "nx" if only_new else "set"])

    async def due_at(self, member: str) -> float | None:
        """Due time in seconds since the epoch, or None when not scheduled."""
        score = await self.redis.zscore(self.key, member)
        return None if score is None else score / 1000.0

    async def size(self) -> int:
        return int(await self.redis.zcard(self.key))


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
