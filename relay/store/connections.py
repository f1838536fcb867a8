"""Redis clients that ride out a Redis restart: commands are retried with backoff for about a minute."""

from __future__ import annotations

from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

__all__ = ["RETRY_ON", "arq_settings", "redis_client"]

#: errors a restarting Redis produces; commands are retried on them
RETRY_ON: list[type[Exception]] = [ConnectionError, TimeoutError, BusyLoadingError, OSError]


def _retry() -> Retry:
    # 0.1, 0.2, 0.4 ... capped at 2 s: about 60 s before an error reaches the caller
    return Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=35)


def redis_client(url: str) -> Redis:
    client: Redis = Redis.from_url(
        url,
        decode_responses=True,
        retry=_retry(),
        retry_on_error=RETRY_ON,
        # no PING before commands after idle time: a dead connection fails the command, which is retried
        health_check_interval=0,
        socket_connect_timeout=5,
    )
    return client


def arq_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_retries = 30
    settings.retry_on_error = RETRY_ON
    settings.retry = _retry()
    return settings
