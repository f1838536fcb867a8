"""Typed application keys (kept apart to break import cycles)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from relay.settings import Settings
from relay.store import Store

__all__ = ["REDIS", "SETTINGS", "STORE"]

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
STORE = web.AppKey("store", Store)
