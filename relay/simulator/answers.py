"""The simulator's HTTP answers: Graph errors, request bodies, the ``answer`` knob's refusals, scripted answers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from relay.simulator.forms import error_body, throttled_body, unavailable_body
from relay.simulator.options import SimOptions

__all__ = ["graph_error", "json_body", "refused_action", "respond"]


def graph_error(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    inner: dict[str, str] | None = None,
) -> web.Response:
    """Graph's error response."""
    return web.json_response(error_body(code, message, inner), status=status, headers=headers)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object ({} for none); 400 invalidRequest for anything else."""
    if not request.can_read_body:
        return {}
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"code": "invalidRequest", "message": "Malformed JSON body."}}),
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"code": "invalidRequest", "message": "The body must be a JSON object."}}),
            content_type="application/json",
        )
    return body


def refused_action(opts: SimOptions) -> web.Response | None:
    """The ``answer`` knob's refusals: a conflict, a redirect, throttling."""
    retry = {"Retry-After": opts.retry_after} if opts.retry_after is not None else {}
    if opts.answer == "conflict":
        return graph_error(409, "nameAlreadyExists", "The specified item name already exists.")
    if opts.answer == "redirect":
        return web.Response(status=302, headers={"Location": "http://169.254.169.254/latest/meta-data"})
    if opts.answer == "throttled":
        return web.json_response(throttled_body(), status=429, headers=retry)
    if opts.answer == "unavailable":
        return web.json_response(unavailable_body(), status=503, headers=retry)
    return None


def respond(status: int, headers: dict[str, str], body: Any) -> web.Response:
    """A response from (status, headers, body): dicts and lists as JSON, strings as text, None as no body."""
    out: CIMultiDict[str] = CIMultiDict({str(k): str(v) for k, v in headers.items()})
    if body is None:
        return web.Response(status=status, headers=out)
    if isinstance(body, str):
        out.setdefault("Content-Type", "text/plain; charset=utf-8")
        return web.Response(status=status, headers=out, body=body.encode())
    out.setdefault("Content-Type", "application/json")
    return web.Response(status=status, headers=out, body=json.dumps(body).encode())
