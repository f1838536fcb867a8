"""Query parameters shared by several endpoints; a bad one is a 422 naming it."""

from __future__ import annotations

import math
import re

from aiohttp import web

from relay.api.problems import ProblemError

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_WAIT",
    "cursor_end",
    "field_error",
    "limit",
    "metadata_filter",
    "wait",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: ``?wait=`` is capped at this many seconds
MAX_WAIT = 60.0

_CURSOR = re.compile(r"^\d{1,16}-\d{1,16}$")
#: ``?metadata[key]=value`` (OpenAPI's deepObject style): at most this many, each key and value this long
_MAX_FILTERS = 8
_MAX_FILTER_TEXT = 256


def field_error(field: str, message: str) -> ProblemError:
    return ProblemError(422, "Invalid query parameter", message, errors=[{"field": field, "message": message}])


def limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise field_error("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def cursor_end(request: web.Request) -> str:
    """The jobs index position to list from: the newest entry, or just before the cursor's entry."""
    cursor = request.query.get("cursor")
    if cursor is None:
        return "+"
    if _CURSOR.match(cursor) is None:
        raise field_error("cursor", "cursor must be a nextCursor value from an earlier page")
    return f"({cursor}"


def wait(request: web.Request) -> tuple[float, int | None] | None:
    """``?wait=SECONDS`` (0..60) and the optional ``?sequence=N`` it compares with; None without ``wait``."""
    raw = request.query.get("wait")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise field_error("wait", f"wait must be a number of seconds from 0 to {MAX_WAIT:g}") from None
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_WAIT:
        raise field_error("wait", f"wait must be a number of seconds from 0 to {MAX_WAIT:g}")
    sequence: int | None = None
    raw_seq = request.query.get("sequence")
    if raw_seq is not None:
        if not raw_seq.isdigit() or len(raw_seq) > 18:
            raise field_error("sequence", "sequence must be a whole number >= 0")
        sequence = int(raw_seq)
    return seconds, sequence


def metadata_filter(request: web.Request) -> dict[str, str]:
    """``?metadata[key]=value``: the metadata a listed job must have (top-level keys; each value compared as text,
    a number or boolean as its JSON text). Empty without any."""
    wanted: dict[str, str] = {}
    for name, value in request.query.items():
        if not name.startswith("metadata["):
            continue
        key = name[len("metadata[") : -1] if name.endswith("]") else ""
        if not key or "[" in key or len(key) > _MAX_FILTER_TEXT or len(value) > _MAX_FILTER_TEXT:
            raise field_error(name, f"write metadata[key]=value, key and value 1 to {_MAX_FILTER_TEXT} characters")
        if key in wanted:
            raise field_error(name, "give each metadata key once")
        wanted[key] = value
    if len(wanted) > _MAX_FILTERS:
        raise field_error("metadata", f"at most {_MAX_FILTERS} metadata[key]=value filters")
    return wanted
