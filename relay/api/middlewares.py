"""The API's middleware: request id, bearer-token auth, the query check, and problem+json for every failure."""

from __future__ import annotations

import functools
import hmac
import os
import sys
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.api.problems import ProblemError, problem_response
from relay.api.typedefs import QUERY_PARAMETERS, SETTINGS
from relay.config.settings import Settings
from relay.config.tenants import owner_of
from relay.store.durable import NotReplicated
from relay.store.refusals import SPELLS

__all__ = ["OWNER", "REFUSED_RETRY_AFTER", "TENANT", "api_middleware", "is_public", "loopback_guard"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OWNER = web.RequestKey("owner", str)
#: the name RELAY_API_TOKENS gives the caller's token (``name:token``), "public" without tokens, else ""
TENANT = web.RequestKey("tenant", str)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
#: methods that change something: a browser page of another origin may not send them to a tokenless relay
_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

log = structlog.stdlib.get_logger("relay.api")
#: seconds a client is asked to wait when Redis refuses commands (a full Redis is an operator's fix, not a blip)
REFUSED_RETRY_AFTER = 5


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request's one layer: its request id, bearer-token auth, the query check, and problem+json for
    every failure. One layer, not four: each middleware costs every request a coroutine and a wrapper."""
    incoming = request.headers.get("X-Request-Id", "")
    # 32 random hex digits, like uuid4().hex, without building a UUID per request
    request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else os.urandom(16).hex()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        settings = request.app[SETTINGS]  # read once: each request.app[...] is three Python calls
        refused = loopback_guard(request, settings) or _authenticate(request, settings) or _unknown_query(request)
        response = refused if refused is not None else await handler(request)
    except Exception as exc:
        response = _failure(request, exc)
    else:
        if request.method in _CHANGING and response.status < 300:
            SPELLS.accepted()  # a write went through: a spell of Redis refusals is over (a no-op without one)
    response.headers["X-Request-Id"] = request_id
    return response


def _failure(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The problem+json answer for what a handler raised (a redirect is raised on)."""
    if isinstance(exc, ProblemError):
        return exc.response()
    pydantic_core = sys.modules.get("pydantic_core")  # none before a request body was validated: no such error
    if pydantic_core is not None and isinstance(exc, pydantic_core.ValidationError):
        from relay.api.models import validation_errors

        return problem_response(422, "Invalid request body", "some fields are invalid", errors=validation_errors(exc))
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else None
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem_response(exc.status, exc.reason, detail, headers=headers)
    if isinstance(exc, NotReplicated):
        log.warning("write not confirmed by replicas", path=request.path, error=str(exc))
        return _unavailable("the change was not confirmed by RELAY_REDIS_MIN_REPLICAS Redis replicas in time")
    kind = SPELLS.refused(exc, "api")  # counted; logged once per spell, not per request
    if kind is not None:
        return _unavailable(f"Redis refuses commands ({kind}); nothing was recorded", retry_after=REFUSED_RETRY_AFTER)
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        log.warning("redis unavailable", path=request.path, error=type(exc).__name__)
        return _unavailable(f"Redis is not reachable ({type(exc).__name__})")
    log.exception("unhandled error", path=request.path)  # called in the except block: the traceback is exc's
    return problem_response(500, "Internal Server Error", "the error was logged")


def _unavailable(detail: str, *, retry_after: int = 1) -> web.Response:
    """503: nothing was acknowledged, so the client may retry (with the same Idempotency-Key)."""
    return problem_response(503, "Service Unavailable", detail, headers={"Retry-After": str(retry_after)})


def loopback_guard(request: web.Request, settings: Settings) -> web.Response | None:
    """Without API tokens (``relay dev`` on loopback) anyone who can reach the port may use the API, and a web
    page can too: by DNS rebinding (its own name made to resolve to 127.0.0.1) or by a cross-origin request.
    So a tokenless relay answers only requests addressed to a loopback name (``Host``), and changes nothing
    for a page of another origin (``Origin``). A 403 otherwise; with tokens, the token decides."""
    if settings.api_tokens:
        return None
    host = request.headers.get("Host")
    if host is not None and not _loopback_host(host, settings.host):
        detail = "without RELAY_API_TOKENS relay answers only requests to localhost, 127.0.0.1, [::1] or RELAY_HOST"
        return problem_response(403, "Forbidden", detail)
    origin = request.headers.get("Origin")
    if origin is not None and request.method in _CHANGING and origin.lower() != f"http://{(host or '').lower()}":
        detail = "without RELAY_API_TOKENS relay refuses changes asked by a page of another origin"
        return problem_response(403, "Forbidden", detail)
    return None


def _host_name(host: str) -> str:
    """The name in a ``Host`` header (``[::1]`` with its brackets), without its port, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.partition(":")[0].rstrip(".")


@functools.lru_cache(maxsize=1024)
def _loopback_host(host: str, bound: str) -> bool:
    """Whether a ``Host`` header names this machine's loopback or the address relay is bound to (a client sends
    the same one on every request: its verdict is remembered, for the 1,024 most recent)."""
    return _host_name(host) in _loopback_names(bound)


@functools.cache
def _loopback_names(bound: str) -> frozenset[str]:
    bound = bound.lower().strip("[]")
    return frozenset({"localhost", "127.0.0.1", "[::1]", f"[{bound}]" if ":" in bound else bound})


def _unknown_query(request: web.Request) -> web.Response | None:
    """Unknown query parameters are refused like unknown body fields: a typo should not pass silently."""
    if not request.rel_url.raw_query_string or not request.query:  # (the raw text first: no query parsed)
        return None
    route = request.match_info.route
    if route.resource is None:
        return None
    method = "get" if request.method == "HEAD" else request.method.lower()
    documented = request.app.get(QUERY_PARAMETERS, {})  # an app of other routes (tests) checks none
    allowed = documented.get((route.resource.canonical, method))
    unknown = [
        name
        for name in request.query
        if allowed is not None and name not in allowed and not ("[" in name and name.partition("[")[0] + "[" in allowed)
    ]
    if not unknown:
        return None
    errors = [{"field": name, "message": "unknown query parameter"} for name in unknown]
    return problem_response(422, "Invalid query parameter", "unknown query parameters", errors=errors)


def is_public(path: str) -> bool:
    """Health, metrics, the OpenAPI document and the dashboard's own files (which hold no data) need no token."""
    return path in PUBLIC_PATHS or path == "/ui" or path.startswith("/ui/")


def _authenticate(request: web.Request, settings: Settings) -> web.Response | None:
    """Sets the caller's owner and tenant on the request; a 401 answer when its token is not one of ours."""
    tokens = settings.api_tokens
    if not tokens or is_public(request.path):
        request[OWNER] = owner_of(None)
        request[TENANT] = "public" if not tokens else ""
        return None
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
    request[TENANT] = dict(settings.token_names).get(matched, "")
    return None
