"""Redis clients that ride out a Redis restart or a Sentinel failover: commands are retried with
backoff for about a minute, and a Sentinel URL's clients ask the Sentinels for the primary again
whenever a connection to the old one fails (see :mod:`relay.config.redis_url` for the URL forms).
A Cluster URL's client is :class:`relay.store.cluster_client.RelayCluster`: one attempt per address and
the same minute of retries around each call, through a failover or a slot move."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import ClusterNode as SyncClusterNode
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import AuthenticationError, BusyLoadingError, ConnectionError, RedisClusterException, TimeoutError
from redis.sentinel import Sentinel as SyncSentinel

from relay.config.redis_url import (
    SentinelURL,
    is_cluster_url,
    is_sentinel_url,
    parse_cluster_url,
    parse_sentinel_url,
)
from relay.store.durable import DurableRedis

if TYPE_CHECKING:  # arq is the worker's (its queue), the cluster client a Cluster URL's: imported where used
    from arq.connections import ArqRedis, RedisSettings

__all__ = ["RETRY_ON", "arq_sentinel_pool", "arq_settings", "redis_client", "sync_client"]

#: errors a restarting Redis (or a primary Sentinel has just replaced) produces; commands are retried on them
RETRY_ON: list[type[Exception]] = [ConnectionError, TimeoutError, BusyLoadingError, OSError]
#: a Sentinel that does not answer within this long is skipped for the next one
SENTINEL_TIMEOUT = 5.0


def _retry() -> Retry:
    # 0.1, 0.2, 0.4 ... capped at 2 s: about 60 s before an error reaches the caller
    return Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=35)


def _connection_kwargs(*, decode: bool) -> dict[str, Any]:
    return {
        "decode_responses": decode,
        "retry": _retry(),
        "retry_on_error": RETRY_ON,
        # no PING before commands after idle time: a dead connection fails the command, which is retried
        "health_check_interval": 0,
        "socket_connect_timeout": 5,
    }


class _FailoverConnection(SentinelManagedConnection):
    """One socket attempt per address the Sentinels give, not a minute of them.

    redis-py 5's ``connect_to`` connects through ``Connection.connect``, which retries the same
    address with the connection's retry policy: after a failover it kept knocking at the dead primary
    for the whole retry budget before asking the Sentinels again (redis-py issue 3560, fixed in 6,
    which arq does not allow). Here that inner attempt is made once; the retry around it
    (``SentinelManagedConnection.connect``) asks the Sentinels before each next one.
    """

    async def connect_to(self, address: tuple[str, int]) -> None:
        retry, self.retry = self.retry, Retry(NoBackoff(), 0)
        try:
            await super().connect_to(address)  # type: ignore[no-untyped-call]  # untyped in redis-py 5.2
        finally:
            self.retry = retry


class _FailoverSSLConnection(_FailoverConnection, SSLConnection):
    pass


class _SentinelPool(SentinelConnectionPool):
    """Closing the client closes the connections to the Sentinels too (redis-py 5 leaves them open)."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        # a failover disconnects only the idle connections; everything means the client is closing
        if inuse_connections:
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.aclose()


def _sentinel(target: SentinelURL) -> Sentinel:
    sentinel_kwargs = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}
    sentinel_kwargs.update(target.sentinel_kwargs())
    return Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]  # untyped in redis-py 5.2


def _master_for(target: SentinelURL, redis_class: type[Any], kwargs: dict[str, Any]) -> Any:
    connection_class = _FailoverSSLConnection if target.tls else _FailoverConnection
    return _sentinel(target).master_for(
        target.service,
        redis_class=redis_class,
        connection_pool_class=_SentinelPool,
        **{**kwargs, **target.data_kwargs(), "connection_class": connection_class},
    )


def redis_client(url: str, *, min_replicas: int = 0, wait_timeout: float = 1.0) -> Redis:
    """relay's client (strings in, strings out); with ``min_replicas`` > 0 scripts wait for replicas (store.durable).

    For a Cluster URL a :class:`relay.store.cluster_client.RelayCluster` (typed as ``Redis``: relay calls on it
    what both have, and the cluster client sends each call to the node of its keys)."""
    cls: type[Redis] = DurableRedis if min_replicas > 0 else Redis
    kwargs = _connection_kwargs(decode=True)
    if is_cluster_url(url):
        from relay.store.cluster_client import cluster_client

        cluster = cluster_client(parse_cluster_url(url), kwargs, min_replicas=min_replicas, wait_timeout=wait_timeout)
        return cluster  # type: ignore[return-value]  # a RedisCluster, used through the calls it shares with Redis
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        client: Redis = _master_for(target, cls, kwargs)
    else:
        client = cls.from_url(url, **kwargs)
    if isinstance(client, DurableRedis):
        client.min_replicas = min_replicas
        client.wait_timeout_ms = max(1, round(wait_timeout * 1000))
    return client


def arq_settings(url: str) -> RedisSettings:
    """arq's settings for a plain URL (arq makes the pool); a Sentinel URL goes to :func:`arq_sentinel_pool`."""
    from arq.connections import RedisSettings

    settings = RedisSettings.from_dsn(url)
    settings.conn_retries = 30
    settings.retry_on_error = RETRY_ON
    settings.retry = _retry()
    return settings


def arq_sentinel_pool(url: str) -> ArqRedis:
    """arq's pool for a Sentinel URL, made here rather than by arq: arq's own Sentinel path gives its
    connections no retry, no timeouts, no Sentinel password and no TLS options, so a failover would
    end the worker. The caller sets the pool's serializers and queue name, as arq's ``create_pool`` does."""
    from arq.connections import ArqRedis

    target = parse_sentinel_url(url)
    pool: ArqRedis = _master_for(target, ArqRedis, _connection_kwargs(decode=False))
    return pool


def sync_client(url: str, *, timeout: float) -> redis.Redis:
    """A blocking client for one-off checks (the start's PING), any URL form. For a Cluster URL redis-py's blocking
    cluster client, which reads the slot map as it is made: a cluster none of whose nodes answer is a
    ``ConnectionError`` here, a wrong password an ``AuthenticationError``, as from the other forms' ``ping()``."""
    limits = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if is_cluster_url(url):
        return _sync_cluster(url, limits)  # type: ignore[return-value]  # ping, info and close, as Redis
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **limits)
    target = parse_sentinel_url(url)
    # untyped in redis-py 5.2
    sentinel = SyncSentinel(list(target.sentinels), sentinel_kwargs={**limits, **target.sentinel_kwargs()})  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(target.service, **{**limits, **target.data_kwargs()})  # type: ignore[no-untyped-call]
    return client


def _sync_cluster(url: str, limits: dict[str, float]) -> SyncRedisCluster:
    target = parse_cluster_url(url)
    nodes = [SyncClusterNode(host, port) for host, port in target.nodes]  # type: ignore[no-untyped-call]
    try:
        return SyncRedisCluster(  # type: ignore[abstract]  # redis-py 5.2's abstract base, not ours
            startup_nodes=nodes, cluster_error_retry_attempts=0, retry=None, **{**limits, **target.node_kwargs()}
        )
    except RedisClusterException as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, AuthenticationError | ConnectionError | TimeoutError):
            raise cause from None
        raise ConnectionError(str(exc).split(":", 1)[0]) from exc
