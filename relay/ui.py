"""The read-only dashboard at ``/ui``: static files from ``relay/static/``, no build step, nothing remote.

The page and its files hold no data and are served without a token; everything the page shows it
loads from the authenticated ``/v1`` API with the token the user types in (kept in sessionStorage).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from relay.middlewares import auth_middleware

__all__ = ["STATIC_DIR", "public_ui_middleware", "routes", "setup_ui"]

STATIC_DIR = Path(__file__).parent / "static"
#: the only files served, with their types: nothing else under relay/static/ is reachable
_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # the page runs only its own script and talks only to this origin: an injected script could
    # not load or send anything (the token lives in sessionStorage)
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _file(name: str) -> web.StreamResponse:
    content_type = _FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers={**_HEADERS, "Content-Type": f"{content_type}; charset=utf-8"})


@routes.get("/ui")
async def index(_: web.Request) -> web.StreamResponse:
    return _file("index.html")


@routes.get("/ui/")
async def index_slash(_: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui")


@routes.get("/ui/static/{name}")
async def static_file(request: web.Request) -> web.StreamResponse:
    return _file(request.match_info["name"])


_UI_HANDLERS = frozenset({index, index_slash, static_file})


@web.middleware
async def public_ui_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let the dashboard's own files through without a token: they carry no data.

    Runs just before the auth middleware and, for a request routed to one of this module's handlers,
    calls that handler directly; every other request goes on to auth as before.
    """
    route_handler = request.match_info.handler
    if request.match_info.http_exception is None and route_handler in _UI_HANDLERS:
        return await route_handler(request)
    return await handler(request)


def setup_ui(app: web.Application) -> None:
    """Register ``/ui`` and put :func:`public_ui_middleware` right before the auth middleware."""
    app.add_routes(routes)
    middlewares = app.middlewares
    position = middlewares.index(auth_middleware) if auth_middleware in middlewares else len(middlewares)
    middlewares.insert(position, public_ui_middleware)
