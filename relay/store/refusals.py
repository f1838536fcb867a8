"""Redis refusing a command it understood: out of memory (``maxmemory`` with ``noeviction``), a read-only
replica, a script still running (``BUSY``), a dataset still loading, a replica whose primary is down, a failed
RDB save that stops writes (``MISCONF``), too few replicas (``NOREPLICAS``), a cluster without a slot's owner, or
a cluster moving a slot (``moving``: a script refused with ``non local key``, redirections run out): transient,
never an answer.

None of these is a bug of relay's: the API answers 503 with ``Retry-After`` and workers back off. Each is
counted (``relay_redis_refusals_total{kind}``) and logged once per spell, not once per request: a full Redis
under load is thousands of refusals a second. A spell starts with its first refusal and ends when writes go
through again, twice with no refusal between (the readiness probe, a write request, a worker's claim), or after
:data:`QUIET` seconds without a refusal of its kind (the next one starts a new spell).
"""

from __future__ import annotations

import time

import structlog
from redis._parsers.base import BaseParser
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)

from relay import metrics

__all__ = ["QUIET", "SPELLS", "Spells", "refusal_kind", "script_error"]

log = structlog.stdlib.get_logger("relay.redis")

#: seconds without a refusal of a kind after which its spell is over (the next refusal logs again)
QUIET = 30.0

#: the error code Redis starts a refusal with -> the kind counted and logged
_CODES = {
    "OOM": "oom",
    "READONLY": "readonly",
    "BUSY": "busy",
    "LOADING": "loading",
    "MASTERDOWN": "masterdown",
    "MISCONF": "misconf",
    "NOREPLICAS": "noreplicas",
    "CLUSTERDOWN": "clusterdown",
    "TRYAGAIN": "tryagain",
}
#: redis-py's classes for some of them (their message no longer starts with the code)
_CLASSES: tuple[tuple[type[Exception], str], ...] = (
    (OutOfMemoryError, "oom"),
    (ReadOnlyError, "readonly"),
    (BusyLoadingError, "loading"),
    (MasterDownError, "masterdown"),
    (TryAgainError, "tryagain"),
    (ClusterDownError, "clusterdown"),
)
#: a Redis Cluster moving a slot: a script whose keys are split between two nodes is refused with this (its anchor
#: not moved yet, docs/cluster-design.md), and redis-py's redirections run out with ClusterError "TTL exhausted"
_MOVING = ("non local key", "TTL exhausted")
_SCRIPT_FAILED = "relay script failed: "


def refusal_kind(exc: BaseException) -> str | None:
    """The kind of refusal ``exc`` is (``oom``, ``readonly``, ``busy``...), or None if it is not one."""
    if not isinstance(exc, RedisError):
        return None
    for cls, kind in _CLASSES:
        if isinstance(exc, cls):
            return kind
    message = str(exc)
    if any(part in message for part in _MOVING) or type(exc) is ClusterError:
        return "moving"
    message = message.removeprefix(_SCRIPT_FAILED)
    code = message.split(" ", 1)[0]
    return _CODES.get(code)


def script_error(err: str) -> RedisError:
    """The exception for one call of a batched script that failed in Lua with ``err``: the class redis-py gives
    that error when a command answers it (an ``OOM`` is an ``OutOfMemoryError``), its message saying a script
    failed, so that a refusal inside a script keeps its kind."""
    exc: RedisError = BaseParser.parse_error(err)  # type: ignore[no-untyped-call]  # untyped in redis-py 5.2
    exc.args = (f"{_SCRIPT_FAILED}{err}",)  # the whole message: redis-py's drops the code
    return exc


class Spells:
    """Refusals counted by kind, logged at the start and the end of each spell (one process's view)."""

    def __init__(self, quiet: float = QUIET) -> None:
        self.quiet = quiet
        self._first: dict[str, float] = {}  # kind -> monotonic time of the spell's first refusal
        self._last: dict[str, float] = {}  # kind -> of its latest
        self._count: dict[str, int] = {}  # kind -> refusals in the spell
        self._refused_since_accepted = False

    def refused(self, exc: BaseException, where: str) -> str | None:
        """Count ``exc`` if it is a refusal (and log it if it starts a spell); its kind, or None if it is not one."""
        kind = refusal_kind(exc)
        if kind is None:
            return None
        metrics.REDIS_REFUSALS.labels(kind=kind).inc()
        now = time.monotonic()
        last = self._last.get(kind)
        if last is None or now - last > self.quiet:
            if last is not None:  # the previous spell ended quietly
                self._ended(kind)
            self._first[kind], self._count[kind] = now, 0
            log.error(
                "redis refuses commands; answering 503 and backing off until it accepts them again",
                kind=kind,
                where=where,
                error=str(exc).removeprefix(_SCRIPT_FAILED)[:200],
            )
        self._last[kind] = now
        self._count[kind] += 1
        self._refused_since_accepted = True
        return kind

    def accepted(self) -> None:
        """A write went through. Twice in a row with no refusal between, every spell is over (logged, with how
        long it lasted and what it refused): a Redis at its limit, or scripts whose first write is one a full Redis
        still takes (a delete), let some writes through among the refused ones, which must not log a line each."""
        if not self._last:
            return
        if self._refused_since_accepted:
            self._refused_since_accepted = False
            return
        for kind in list(self._last):
            self._ended(kind)

    def refusing(self, within: float | None = None) -> str | None:
        """The kind of the spell going on (a refusal seen within ``within`` seconds, by default :data:`QUIET`)."""
        now = time.monotonic()
        window = self.quiet if within is None else within
        recent = [(last, kind) for kind, last in self._last.items() if now - last <= window]
        return max(recent)[1] if recent else None

    def _ended(self, kind: str) -> None:
        last = self._last.pop(kind)
        first = self._first.pop(kind, last)
        refusals = self._count.pop(kind, 0)
        log.warning("redis accepts commands again", kind=kind, refusals=refusals, refused_for_s=round(last - first, 1))


#: the process's spells (the API's and a worker's are separate processes)
SPELLS = Spells()
