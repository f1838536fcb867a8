"""``RELAY_REDIS_MIN_REPLICAS``: a state change counts as done only once that many replicas have it.

Every state change relay makes is a Lua script (``relay/store/lua/*.lua``, loaded by
``relay.store.scripts``), and every script reaches Redis through ``evalsha``. With the setting
above 0 the client is a :class:`DurableRedis`, whose ``evalsha`` sends ``EVALSHA`` and ``WAIT`` in one
pipeline on one connection: Redis refuses ``WAIT`` inside a script, and ``WAIT`` covers only the
writes of the connection it is sent on. When fewer replicas than asked confirm within the timeout,
the call raises :class:`NotReplicated`: the API answers 503, a worker drops what it was doing and the
member's lease brings the work back. With the setting at 0 the client is a plain ``Redis``: no extra
round trip, no extra code on the hot paths.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["DurableRedis", "NotReplicated"]


class NotReplicated(RedisError):
    """The write reached the primary but not enough replicas confirmed it in time: it is not done.

    It may still be applied (and replicated later), or be lost with the primary: whoever made it
    treats it as failed, and relay's writes are guarded (claim tokens, sequences, leases) so that
    the work coming back either way does no harm.
    """


class DurableRedis(Redis):
    """A ``Redis`` whose scripts return only once ``min_replicas`` replicas confirmed their writes."""

    min_replicas: int = 1
    wait_timeout_ms: int = 1000

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        async with self.pipeline(transaction=False) as pipe:
            pipe.evalsha(sha, numkeys, *keys_and_args)
            pipe.wait(self.min_replicas, self.wait_timeout_ms)
            # errors come back as values: raise_on_error would annotate them with every argument
            # (monitor URLs among them), and those messages reach the logs
            result, confirmed = await pipe.execute(raise_on_error=False)
        if isinstance(result, Exception):
            raise result
        if isinstance(confirmed, Exception):
            raise confirmed
        if int(confirmed) < self.min_replicas:
            raise NotReplicated(
                f"WAIT: {confirmed} of {self.min_replicas} replicas confirmed the write within "
                f"{self.wait_timeout_ms} ms (RELAY_REDIS_MIN_REPLICAS)"
            )
        return result
