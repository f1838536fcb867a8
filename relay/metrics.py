"""Prometheus metrics, in the default registry of the process that updates them."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = [
    "DELIVERIES",
    "DELIVERY_LATENCY",
    "EVENTS",
    "JOBS_REGISTERED",
    "POLLS",
    "POLL_LATENCY",
    "RESOLUTIONS",
]

JOBS_REGISTERED = Counter("relay_jobs_registered_total", "Jobs registered through the API")
POLLS = Counter("relay_polls_total", "Monitor polls by outcome", ["outcome"])
POLL_LATENCY = Histogram("relay_poll_duration_seconds", "Monitor request duration")
EVENTS = Counter("relay_events_total", "Events recorded by type", ["type"])
DELIVERIES = Counter("relay_deliveries_total", "Delivery attempts by outcome and status class", ["outcome", "status"])
DELIVERY_LATENCY = Histogram("relay_delivery_duration_seconds", "Callback request duration")
RESOLUTIONS = Counter("relay_resolutions_total", "DriveItem resolutions by outcome", ["outcome"])
