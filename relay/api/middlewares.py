"""Request id, bearer-token auth and the error middleware that turns every failure into problem+json."""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.api.models import ValidationError, validation_errors
from relay.api.openapi import openapi_document
from relay.api.problems import ProblemError, problem_response
from relay.api.typedefs import SETTINGS
from relay.store.durable import NotReplicated

__all__ = [
    "OWNER",
    "TENANT",
    "auth_middleware",
    "error_middleware",
    "is_public",
    "query_middleware",
    "request_id_middleware",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OWNER = web.RequestKey("owner", str)
#: the name RELAY_API_TOKENS gives the caller's token (``name:token``), "public" without tokens, else ""
TENANT = web.RequestKey("tenant", str)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})

log = structlog.stdlib.get_logger("relay.api")


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    # 32 random hex digits, like uuid4().hex, without building a UUID per request
    request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else os.urandom(16).hex()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    response = await handler(request)
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as exc:
        return exc.response()
    except ValidationError as exc:
        return problem_response(422, "Invalid request body", "some fields are invalid", errors=validation_errors(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else None
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem_response(exc.status, exc.reason, detail, headers=headers)
    except NotReplicated as exc:
        log.warning("write not confirmed by replicas", path=request.path, error=str(exc))
        return _unavailable("the change was not confirmed by RELAY_REDIS_MIN_REPLICAS Redis replicas in time")
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log.warning("redis unavailable", path=request.path, error=type(exc).__name__)
        return _unavailable(f"Redis is not reachable ({type(exc).__name__})")
    except Exception:
        log.exception("unhandled error", path=request.path)
        return problem_response(500, "Internal Server Error", "the error was logged")


def _unavailable(detail: str) -> web.Response:
    """503: nothing was acknowledged, so the client may retry (with the same Idempotency-Key)."""
    return problem_response(503, "Service Unavailable", detail, headers={"Retry-After": "1"})


@functools.cache
def _documented_query(path: str, method: str) -> frozenset[str] | None:
    """The query parameters the OpenAPI document gives an operation; None for undocumented routes."""
    item = openapi_document()["paths"].get(path)
    if item is None or method not in item:
        return None
    params = [*item.get("parameters", []), *item[method].get("parameters", [])]
    return frozenset(p["name"] for p in params if p.get("in") == "query")


@web.middleware
async def query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown query parameters are refused like unknown body fields: a typo should not pass silently."""
    route = request.match_info.route
    if request.query and route.resource is not None:
        method = "get" if request.method == "HEAD" else request.method.lower()
        allowed = _documented_query(route.resource.canonical, method)
        unknown = [name for name in request.query if allowed is not None and name not in allowed]
        if unknown:
            errors = [{"field": name, "message": "unknown query parameter"} for name in unknown]
            return problem_response(422, "Invalid query parameter", "unknown query parameters", errors=errors)
    return await handler(request)


def is_public(path: str) -> bool:
    """Health, metrics, the OpenAPI document and the dashboard's own files (which hold no data) need no token."""
    return path in PUBLIC_PATHS or path == "/ui" or path.startswith("/ui/")


def owner_of(token: str | None) -> str:
    """Jobs belong to the token that made them, stored as a digest, never as the token."""
    if token is None:
        return "public"
    return hashlib.sha256(token.encode()).hexdigest()[:24]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    tokens = request.app[SETTINGS].api_tokens
    if not tokens or is_public(request.path):
        request[OWNER] = owner_of(None)
        request[TENANT] = "public" if not tokens else ""
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    matched: str | None = None
    if scheme.lower() == "bearer" and presented:
        candidate = presented.strip().encode()
        for token in tokens:  # every token is compared, in constant time each
            if hmac.compare_digest(candidate, token.encode()):
                matched = token
    if matched is None:
        return problem_response(
            401,
            "Unauthorized",
            "send Authorization: Bearer <token> with one of RELAY_API_TOKENS",
            headers={"WWW-Authenticate": 'Bearer realm="relay"'},
        )
    request[OWNER] = owner_of(matched)
    request[TENANT] = dict(request.app[SETTINGS].token_names).get(matched, "")
    return await handler(request)
