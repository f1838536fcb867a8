"""For operators and tools: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from relay import metrics
from relay.api.http import json_response
from relay.api.problems import ProblemError
from relay.api.routing import ApiRoutes, Operation, problem
from relay.api.typedefs import ARQ_REDIS, OPENAPI, REDIS, SETTINGS, STORE
from relay.store import keys
from relay.store.refusals import SPELLS

__all__ = ["READY_TIMEOUT", "routes"]

routes = ApiRoutes()
log = structlog.stdlib.get_logger("relay.api")

_JSON_OBJECT = {"description": "This document", "content": {"application/json": {"schema": {"type": "object"}}}}


def _status(description: str, word: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"status": {"const": word}}, "required": ["status"]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


#: /readyz answers 503 when Redis does not answer its write probe within this many seconds
READY_TIMEOUT = 2.0


@routes.get("/healthz", Operation("healthz", {"200": _status("Alive", "ok")}, public=True))
async def healthz(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get(
    "/readyz",
    Operation(
        "readyz",
        {"200": _status("Redis accepts writes", "ready"), "503": problem("Redis unreachable or refusing writes")},
        public=True,
    ),
)
async def readyz(request: web.Request) -> web.Response:
    """Ready when Redis takes a write: a full Redis (``maxmemory``), a read-only replica or a busy script answer
    a PING but refuse every registration, so the probe is a write (a short-lived key), not a PING."""
    try:
        await asyncio.wait_for(request.app[REDIS].set(keys.READY_PROBE, "1", px=10_000), READY_TIMEOUT)
    except Exception as exc:
        kind = SPELLS.refused(exc, "readyz")
        if kind is not None:
            raise ProblemError(503, "Not Ready", f"Redis refuses writes ({kind})") from None
        raise ProblemError(503, "Not Ready", f"Redis is not reachable ({type(exc).__name__})") from None
    SPELLS.accepted()
    return json_response({"status": "ready"})


@routes.get(
    "/metrics",
    Operation(
        "metrics",
        description="Prometheus text; with RELAY_METRICS_TOKEN set, only for that bearer token.",
        responses={"200": {"description": "Prometheus text"}, "401": problem("RELAY_METRICS_TOKEN needed")},
        public=True,
    ),
)
async def metrics_view(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].metrics_token
    if token is not None:  # scrapers send it as a bearer token (Prometheus: authorization.credentials_file)
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            raise ProblemError(
                401,
                "Unauthorized",
                "send Authorization: Bearer <RELAY_METRICS_TOKEN>",
                headers={"WWW-Authenticate": 'Bearer realm="relay-metrics"'},
            )
    try:
        stats = await asyncio.wait_for(request.app[STORE].stats(), READY_TIMEOUT)
        if ARQ_REDIS in request.app:  # arq's queue is on its own Redis (RELAY_ARQ_REDIS_URL)
            stats["queued"] = await asyncio.wait_for(request.app[ARQ_REDIS].zcard(keys.ARQ_QUEUE), READY_TIMEOUT)
        metrics.refresh_from_stats(stats)
    except Exception as exc:  # Redis away: still serve the process's own counters
        log.warning("metrics: Redis gauges not refreshed", error=type(exc).__name__)
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/openapi.json", Operation("openapi", {"200": _JSON_OBJECT}, public=True))
async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI]())
