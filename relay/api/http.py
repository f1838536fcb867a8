"""What every handler shares: JSON in and out, and rendering stored jobs as the API shows them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from aiohttp import hdrs, web

from relay.api.problems import ProblemError
from relay.api.typedefs import SETTINGS, STORE
from relay.api.views import stored_job_view
from relay.core import jsonfast
from relay.core.schema import Job

__all__ = ["json_body", "json_object", "json_response", "render_job"]


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=jsonfast.dumps(data), status=status, headers=headers, content_type="application/json")


async def json_body(request: web.Request) -> Any:
    """The request's JSON: 415 when not sent as JSON, 400 when malformed, 422 when hostile (relay/core/jsonfast.py)."""
    return _parsed(await _json_bytes(request))


def _json_bytes(request: web.Request) -> Awaitable[bytes]:
    """The read of a body sent as JSON (415 otherwise). Not a coroutine itself: it hands over the read, so that
    json_object reads without a coroutine of json_body's in between."""
    if not _sent_as_json(request):
        raise ProblemError(415, "Unsupported Media Type", "send the body as application/json")
    return request.read() if request.content.is_eof() else _read_in_time(request)


def _sent_as_json(request: web.Request) -> bool:
    """Content-Type application/json: the usual header as sent, else as aiohttp parses it (e.g. with a charset)."""
    return request.headers.get(hdrs.CONTENT_TYPE) == "application/json" or request.content_type == "application/json"


def _parsed(raw: bytes) -> Any:
    try:
        body = jsonfast.loads_request(raw)
    except jsonfast.HostileJson as exc:
        raise ProblemError(
            422, "Invalid request body", str(exc), errors=[{"field": "body", "message": str(exc)}]
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise ProblemError(400, "Malformed JSON", "the request body is not valid JSON") from None
    field = jsonfast.surrogate_at(raw, body)
    if field is not None:  # UTF-8 cannot carry it, nor Redis' cjson store it: it would fail every write later
        message = "holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not text"
        raise ProblemError(
            422, "Invalid request body", f"{field} {message}", errors=[{"field": field, "message": message}]
        )
    return body


async def _read_in_time(request: web.Request) -> bytes:
    """The body, which has not all arrived yet: within RELAY_API_READ_TIMEOUT, else 408 (slowloris)."""
    limit = request.app[SETTINGS].api_read_timeout
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        detail = f"the request body did not arrive within RELAY_API_READ_TIMEOUT ({limit:g} s)"
        raise ProblemError(408, "Request Timeout", detail, headers={"Connection": "close"}) from None


async def json_object(request: web.Request) -> dict[str, Any]:
    body = _parsed(await _json_bytes(request))
    if not isinstance(body, dict):
        raise ProblemError(422, "Invalid request body", "the body must be a JSON object")
    return body


async def render_job(request: web.Request, job: Job) -> dict[str, Any]:
    """The job as the API shows it, with its monitor's poll count and next due time and its deliveries' state."""
    return stored_job_view(job, *await request.app[STORE].job_info(job))
