"""What a worker says when it starts and stops: relay's own lines, in place of arq's.

arq counts only its own jobs (relay's worker runs DriveItem retries through arq, and everything else in its
claim loops) and names the signal it was stopped by as ``SIGUSR1`` when its owner closes it, so its lines read
``Starting worker for 1 functions: resolve_item`` and ``shutdown on SIGUSR1 ◆ 0 jobs complete`` after a worker
delivered hundreds of events and was stopped by Ctrl-C. :class:`ArqLines` drops those lines (arq's per-job
lines and its warnings stay); :class:`Lifecycle` logs what the worker runs, on which Redis, and what it did.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import Counter

from relay import __version__, metrics
from relay.config.settings import Settings

__all__ = ["ArqLines", "Lifecycle", "quiet_arq"]

log = structlog.stdlib.get_logger("relay.worker")

#: arq's INFO lines that relay's own replace (the start, the Redis banner, the health record, the shutdown)
_REPLACED = ("Starting worker for", "redis_version=", "recording health", "Setting allow_pick_jobs", "shutdown on")


class ArqLines(logging.Filter):
    """Drops arq's start, health and shutdown lines; the rest of arq's lines pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and isinstance(record.msg, str) and record.msg.startswith(_REPLACED))


def quiet_arq() -> None:
    """Install :class:`ArqLines` on arq's worker logger (once)."""
    logger = logging.getLogger("arq.worker")
    if not any(isinstance(f, ArqLines) for f in logger.filters):
        logger.addFilter(ArqLines())


def _total(counter: Counter, **match: str) -> int:
    """The sum of a labelled counter's ``_total`` samples whose labels include ``match``."""
    total = 0.0
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in match.items()):
                total += sample.value
    return int(total)


def _tally() -> dict[str, int]:
    return {
        "polls": _total(metrics.POLLS),
        "deliveries": _total(metrics.DELIVERIES),
        "delivered": _total(metrics.DELIVERIES, outcome="delivered"),
        "resolutions": _total(metrics.RESOLUTIONS),
    }


@dataclass
class Lifecycle:
    """The start, stop and summary lines of one worker (its counts are this process's since it started)."""

    settings: Settings
    redis: str  # where, without credentials (relay.cli.startup.redis_where)
    started: float = field(default_factory=time.monotonic)
    base: dict[str, int] = field(default_factory=_tally)
    signal: str | None = None

    def running(self) -> None:
        settings = self.settings
        log.info(
            "worker started",
            version=__version__,
            redis=self.redis,
            polls_in_flight=settings.poll_concurrency,
            deliveries_in_flight=settings.delivery_concurrency,
            metrics_port=settings.worker_metrics_port or None,
            runs="monitor polls, DriveItem requests, signed deliveries; arq queue for DriveItem retries",
        )

    def stopping(self, signal: str | None, in_flight: int, grace: float) -> None:
        if self.signal is not None:
            return
        self.signal = signal or "close"
        said = {"signal": signal} if signal else {}
        log.info("worker stopping", **said, in_flight=in_flight, grace_s=grace, note="work in flight may finish")

    def stopped(self) -> None:
        now = _tally()
        done: dict[str, Any] = {name: now[name] - self.base[name] for name in now}
        failed = done["deliveries"] - done["delivered"]
        log.info(
            "worker stopped",
            ran_s=round(time.monotonic() - self.started, 1),
            polls=done["polls"],
            delivered=done["delivered"],
            delivery_failures=failed,
            driveitem_resolutions=done["resolutions"],
        )
