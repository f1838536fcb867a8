"""Prometheus metrics.

Counters and histograms live in the process that does the work (the worker's are served on its
own port by ``relay worker``, see ``RELAY_WORKER_METRICS_PORT``); the job and backlog gauges are
read from Redis when the API's ``/metrics`` is scraped, so every API replica reports the same.
"""

from __future__ import annotations

import contextlib
import functools
import io
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

__all__ = [
    "ARQ_QUEUE",
    "BACKLOG",
    "CLOCK_OFFSET",
    "DEAD_LETTERS",
    "DEAD_LETTERS_DROPPED",
    "DELIVERIES",
    "DELIVERY_LATENCY",
    "EVENTS",
    "EVENT_LAG",
    "JOBS",
    "JOBS_REGISTERED",
    "POLLS",
    "POLL_LATENCY",
    "REDIS_REFUSALS",
    "RESOLUTIONS",
    "WORKER_HEARTBEAT",
    "Heartbeat",
    "labelled",
    "refresh_from_stats",
    "serve_worker_metrics",
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
PARKED = Counter(
    "relay_parked_total",
    "Polls (their jobs failed), deliveries (their event dead-lettered) and resolutions (their job failed) parked "
    "after failing with an unexpected error several times in a row",
    ["kind"],
)
RESOLUTIONS = Counter("relay_resolutions_total", "DriveItem resolutions by outcome", ["outcome"])
REDIS_REFUSALS = Counter(
    "relay_redis_refusals_total",
    "Commands Redis refused (out of memory, read-only, busy, loading...) by kind",
    ["kind"],
)
CLOCK_OFFSET = Gauge(
    "relay_clock_offset_seconds", "Redis' clock (TIME) minus this process's, last measured; relay uses Redis' time"
)

JOBS = Gauge("relay_jobs", "Jobs by state, from Redis (lifetime counts; active = not yet ended)", ["state"])
BACKLOG = Gauge("relay_backlog", "Scheduled work in Redis: monitors tracked, jobs with undelivered events", ["kind"])
DEAD_LETTERS = Gauge(
    "relay_dead_letters", "Events whose delivery schedule was exhausted and not redelivered (unexpired, bounded)"
)
DEAD_LETTERS_DROPPED = Gauge(
    "relay_dead_letters_dropped",
    "Dead letters dropped from the count and listings, the oldest, over RELAY_DEAD_LETTERS_MAX (lifetime, from Redis)",
)
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
    DEAD_LETTERS_DROPPED.set(stats.get("dead_dropped", 0))
    ARQ_QUEUE.set(stats.get("queued", 0))


class Heartbeat:
    """When the worker's arq loop last went round: set on the event loop, read by the metrics server's thread."""

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self.last: float | None = None

    def beat(self) -> None:
        self.last = time.monotonic()

    def alive(self) -> bool:
        """True until the loop has gone ``stale_after`` seconds without a beat (and before its first one)."""
        return self.last is None or time.monotonic() - self.last < self.stale_after


#: arq's loop beats every poll (2 s) even while busy; a minute without one is a stuck worker
WORKER_HEARTBEAT = Heartbeat(stale_after=60.0)


_TIMED_OUT = b"HTTP/1.0 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class _Deadline(io.RawIOBase):
    """A connection's reads, each given what is left of its time (a client trickling bytes gets no more)."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock = sock
        self._deadline = time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _QuietHandler(WSGIRequestHandler):
    """One connection of the metrics server (HTTP/1.0: one request each). As the API's server does, it gives the
    request's line and headers ``timeout`` seconds from the connection's start: a client that sends nothing, half
    a request or a trickle gets ``408`` and is closed instead of holding a thread and a file descriptor for ever
    (slowloris); the answer's writes get ``timeout`` seconds each. ``timeout`` (socketserver's, None there) is set
    for each server: serve_worker_metrics' ``read_timeout``."""

    def setup(self) -> None:
        super().setup()  # sets the socket's timeout
        if self.timeout is not None:
            self.rfile = io.BufferedReader(_Deadline(self.connection, self.timeout))

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # the head has arrived: the answer's writes get the whole timeout
        self.connection.settimeout(self.timeout)
        return parsed

    def handle(self) -> None:
        try:
            super().handle()
        except TimeoutError:
            self.close_connection = True
            with contextlib.suppress(OSError):  # a client gone or not reading: the connection closes all the same
                self.wfile.write(_TIMED_OUT)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: no line each."""


def serve_worker_metrics(
    port: int, addr: str, heartbeat: Heartbeat = WORKER_HEARTBEAT, *, read_timeout: float = 10.0
) -> ThreadingWSGIServer:
    """Prometheus text on every path of ``addr:port``, except ``/healthz``: 200 while ``heartbeat`` is alive,
    else 503 (the worker's liveness probe, an HTTP GET: no interpreter started per probe). Runs in a thread.
    A connection has ``read_timeout`` seconds (``RELAY_API_READ_TIMEOUT``, as the API) for each read and write."""
    metrics_app = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if heartbeat.alive():
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"the worker's arq loop has not gone round for %d s\n" % heartbeat.stale_after]

    handler = type("_MetricsHandler", (_QuietHandler,), {"timeout": read_timeout})
    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=handler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server
