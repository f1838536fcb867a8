"""The one way the API and the worker open the store: its Redis client and its :class:`Store`, from the settings."""

from __future__ import annotations

from relay.config.settings import Settings
from relay.store.connections import redis_client
from relay.store.jobs import Store

__all__ = ["open_store"]


def open_store(settings: Settings) -> Store:
    """The store on ``REDIS_URL`` (plain or Sentinel; with ``RELAY_REDIS_MIN_REPLICAS`` above 0, writes wait for
    replicas) keeping what the settings say for as long as they say. The caller closes ``store.redis``."""
    redis = redis_client(
        settings.effective_redis_url, min_replicas=settings.redis_min_replicas, wait_timeout=settings.redis_wait_timeout
    )
    return Store(
        redis,
        retention=settings.job_retention,
        job_timeout=settings.job_timeout,
        first_poll=settings.poll_initial_interval,
        chunk=settings.monitor_chunk,
        dead_letters_max=settings.dead_letters_max,
    )
