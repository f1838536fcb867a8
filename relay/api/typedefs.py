"""Typed application keys (kept apart to break import cycles)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.config.tenants import Signing
from relay.core.crypto import Vault
from relay.credentials.broker import CredentialBroker
from relay.store.clock import RedisClock
from relay.store.jobs import Store

__all__ = [
    "ARQ_REDIS",
    "BROKER",
    "CLOCK",
    "OPENAPI",
    "QUERY_PARAMETERS",
    "REDIS",
    "SESSION",
    "SETTINGS",
    "SIGNING",
    "STORE",
    "VAULT",
]

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
#: arq's own Redis when RELAY_ARQ_REDIS_URL names one (its queue depth for /metrics); absent otherwise
ARQ_REDIS = web.AppKey("arq_redis", Redis)
STORE = web.AppKey("store", Store)
#: Redis' clock (TIME), the one the scripts stamp jobs with: the time of what the API writes itself
CLOCK = web.AppKey("clock", RedisClock)
VAULT = web.AppKey("vault", Vault)
#: which secrets sign each owner's events (stream frames)
SIGNING = web.AppKey("signing", Signing)
#: the outgoing client of the API (actions it starts for apps), guarded like the workers'
SESSION = web.AppKey("session", aiohttp.ClientSession)
#: tokens from the credentials relay holds, for actions the API starts: {"api": broker}, made on first use
BROKER = web.AppKey("broker", dict[str, CredentialBroker])
#: the OpenAPI document of the routes this app serves (built from the same tables when first asked for, then kept)
OPENAPI: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("openapi")
#: (path, method) -> the query parameters the document gives that operation (others are refused with 422)
QUERY_PARAMETERS = web.AppKey("query_parameters", dict[tuple[str, str], frozenset[str]])
