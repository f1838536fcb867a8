"""The API application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from relay.connections import redis_client
from relay.crypto import Vault
from relay.live import setup_live
from relay.middlewares import auth_middleware, error_middleware, query_middleware, request_id_middleware
from relay.settings import Settings
from relay.store import Store
from relay.typedefs import REDIS, SETTINGS, STORE, VAULT
from relay.ui import setup_ui
from relay.views import routes

__all__ = ["MAX_BODY", "create_app"]

#: request bodies larger than this get 413
MAX_BODY = 64 * 1024


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[request_id_middleware, error_middleware, auth_middleware, query_middleware],
        client_max_size=MAX_BODY,
    )
    app[SETTINGS] = settings
    app[VAULT] = Vault(settings.vault_keys)
    app.cleanup_ctx.append(_redis)
    app.add_routes(routes)
    setup_live(app)
    setup_ui(app)
    return app


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis = redis_client(
        settings.effective_redis_url, min_replicas=settings.redis_min_replicas, wait_timeout=settings.redis_wait_timeout
    )
    app[REDIS] = redis
    app[STORE] = Store(redis, retention=settings.job_retention, job_timeout=settings.job_timeout)
    yield
    await redis.aclose()
