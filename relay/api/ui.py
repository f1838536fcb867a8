"""The read-only dashboard at ``/ui``: static files from ``relay/api/static/``, no build step, nothing remote.

The page and its files hold no data and are served without a token; everything the page shows it
loads from the authenticated ``/v1`` API with the token the user types in (kept in sessionStorage).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from relay.api.routing import ApiRoutes, Operation, problem

__all__ = ["STATIC_DIR", "routes"]

STATIC_DIR = Path(__file__).parent / "static"
#: the only files served, with their types: nothing else under relay/api/static/ is reachable
_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "util.js": "text/javascript",
    "jobs.js": "text/javascript",
    "job.js": "text/javascript",
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

routes = ApiRoutes()
_TEXT = {"schema": {"type": "string"}}


def _file(name: str) -> web.StreamResponse:
    content_type = _FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers={**_HEADERS, "Content-Type": f"{content_type}; charset=utf-8"})


@routes.get(
    "/ui",
    Operation(
        "dashboard",
        description="The dashboard (HTML); its data comes from the API with the user's token.",
        responses={"200": {"description": "HTML", "content": {"text/html": _TEXT}}},
        public=True,
    ),
)
async def index(_: web.Request) -> web.StreamResponse:
    return _file("index.html")


@routes.get("/ui/", Operation("dashboardSlash", {"302": {"description": "Redirect to /ui"}}, public=True))
async def index_slash(_: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui")


@routes.get(
    "/ui/static/{name}",
    Operation(
        "dashboardFile",
        description="The dashboard's own script and style sheet (index.html, app.js, app.css).",
        responses={
            "200": {
                "description": "The file",
                "content": {"text/html": _TEXT, "text/javascript": _TEXT, "text/css": _TEXT},
            },
            "404": problem("No such file"),
        },
        public=True,
    ),
)
async def static_file(request: web.Request) -> web.StreamResponse:
    return _file(request.match_info["name"])
