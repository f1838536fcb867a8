"""The read-only dashboard at ``/ui``: static files from ``relay/api/static/``, no build step, nothing remote.

The page and its files hold no data and are served without a token; everything the page shows it
loads from the authenticated ``/v1`` API with the token the user types in (kept in sessionStorage).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

__all__ = ["STATIC_DIR", "routes", "setup_ui"]

STATIC_DIR = Path(__file__).parent / "static"
#: the only files served, with their types: nothing else under relay/api/static/ is reachable
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


def setup_ui(app: web.Application) -> None:
    """Register ``/ui``; the auth middleware lets its paths through (see ``relay.middlewares.is_public``)."""
    app.add_routes(routes)
