"""Prometheus metrics.

Counters and histograms live in the process that does the work (the worker's are served on its
own port by ``relay worker``, see ``RELAY_WORKER_METRICS_PORT``); the job and backlog gauges are
read from Redis when the API's ``/metrics`` is scraped, so every API replica reports the same.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ARQ_QUEUE",
    "BACKLOG",
    "DEAD_LETTERS",
    "DELIVERIES",
    "DELIVERY_LATENCY",
    "EVENTS",
    "EVENT_LAG",
    "JOBS",
    "JOBS_REGISTERED",
    "POLLS",
    "POLL_LATENCY",
    "RESOLUTIONS",
    "labelled",
    "refresh_from_stats",
]

_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 7200, 36000)

JOBS_REGISTERED = Counter("relay_jobs_registered_total", "Jobs registered through this API process")
POLLS = Counter("relay_polls_total", "Monitor polls by outcome", ["outcome"])
POLL_LATENCY = Histogram("relay_poll_duration_seconds", "Monitor request duration")
EVENTS = Counter("relay_events_total", "Events recorded by type", ["type"])
DELIVERIES = Counter("relay_deliveries_total", "Delivery attempts by outcome and status class", ["outcome", "status"])
DELIVERY_LATENCY = Histogram("relay_delivery_duration_seconds", "Callback request duration")
EVENT_LAG = Histogram(
    "relay_event_lag_seconds", "From the monitor change being recorded to the callback's 2xx", buckets=_LAG_BUCKETS
)
RESOLUTIONS = Counter("relay_resolutions_total", "DriveItem resolutions by outcome", ["outcome"])

JOBS = Gauge("relay_jobs", "Jobs by state, from Redis (lifetime counts; active = not yet ended)", ["state"])
BACKLOG = Gauge("relay_backlog", "Scheduled work in Redis: monitors tracked, jobs with undelivered events", ["kind"])
DEAD_LETTERS = Gauge("relay_dead_letters", "Events whose delivery schedule was exhausted and not redelivered")
ARQ_QUEUE = Gauge("relay_arq_queue_depth", "Jobs waiting in the arq queue (DriveItem resolutions)")


def labelled(metric: Counter) -> Callable[..., Counter]:
    """``metric.labels`` remembered per label values: the hot paths count without a lock and a lookup each time."""
    return functools.lru_cache(maxsize=256)(metric.labels)


def refresh_from_stats(stats: dict[str, int]) -> None:
    registered = stats.get("registered", 0)
    ended = 0
    for state in ("completed", "failed", "cancelled"):
        JOBS.labels(state=state).set(stats.get(state, 0))
        ended += stats.get(state, 0)
    JOBS.labels(state="registered").set(registered)
    JOBS.labels(state="active").set(max(0, registered - ended))
    BACKLOG.labels(kind="monitors").set(stats.get("monitors", 0))
    BACKLOG.labels(kind="deliveries").set(stats.get("deliveries", 0))
    DEAD_LETTERS.set(stats.get("dead", 0))
    ARQ_QUEUE.set(stats.get("queued", 0))
