"""The API application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from relay.api import deliveries, jobs, ops, sse, streams, ui
from relay.api.middlewares import api_middleware
from relay.api.routing import ApiRoutes, documented_queries, route_paths
from relay.api.typedefs import (
    ARQ_REDIS,
    BROKER,
    CLOCK,
    OPENAPI,
    QUERY_PARAMETERS,
    REDIS,
    SESSION,
    SETTINGS,
    SIGNING,
    STORE,
    VAULT,
)
from relay.config.settings import Settings
from relay.config.tenants import Signing
from relay.core.crypto import Vault
from relay.outbound.client import create_session
from relay.store.clock import RedisClock
from relay.store.connections import redis_client
from relay.store.open import open_store

__all__ = ["MAX_BODY", "ROUTES", "create_app"]

#: request bodies larger than this get 413
MAX_BODY = 64 * 1024
#: every route the API serves, each with its OpenAPI operation: the app adds these, the document describes these
ROUTES: tuple[ApiRoutes, ...] = (jobs.routes, deliveries.routes, streams.routes, ops.routes, ui.routes)


def create_app(settings: Settings) -> web.Application:
    """The API; :class:`relay.config.settings.ConfigError` without a sealing key (RELAY_ENCRYPTION_KEY)."""
    settings.check_sealing()
    app = web.Application(
        middlewares=[api_middleware],
        client_max_size=MAX_BODY,
    )
    app[SETTINGS] = settings
    app[VAULT] = Vault(settings.vault_keys, padded=settings.store_legacy_format)
    app[SIGNING] = Signing.of(settings)
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_session)
    for table in ROUTES:
        app.add_routes(table)
    # the document (every model's JSON schema: pydantic and ~0.5 MiB of dicts) is built by the first GET
    # /openapi.json; the query parameters each operation takes come from the same route tables, without the models
    app[OPENAPI] = _openapi_document
    app[QUERY_PARAMETERS] = documented_queries(route_paths(ROUTES))
    sse.setup(app)
    return app


def _openapi_document() -> dict[str, Any]:
    from relay.api.openapi import openapi_document  # the models' JSON schemas: pydantic

    return openapi_document(ROUTES)


async def _redis(app: web.Application) -> AsyncIterator[None]:
    store = open_store(app[SETTINGS])
    app[STORE] = store
    app[REDIS] = store.redis
    arq_url = app[SETTINGS].arq_redis_url
    if arq_url is not None:  # arq's queue on a Redis of its own (REDIS_URL a cluster's)
        app[ARQ_REDIS] = redis_client(arq_url)
    # measured in the background: the API starts (and answers /readyz 503) without waiting for Redis
    clock = app[CLOCK] = RedisClock()
    clock.start(store.redis, at_once=True)
    yield
    await clock.stop()
    await store.redis.aclose()
    if ARQ_REDIS in app:
        await app[ARQ_REDIS].aclose()


async def _session(app: web.Application) -> AsyncIterator[None]:
    session = create_session(app[SETTINGS].internal_hosts, limit=100)
    app[SESSION] = session
    app[BROKER] = {}
    yield
    await session.close()
    for broker in app[BROKER].values():
        await broker.close()
