"""Graph error objects in every documented shape: pure, no I/O.

Graph and OneDrive answer errors as ``{"error": {...}}`` (the OData error, Graph's ``publicError``):

- ``code``, ``message``, ``target``: strings, each optional in practice;
- ``innerError`` (``innererror`` in the OData and OneDrive documents): an object of more specific codes (it may
  nest further ``innererror`` objects) or of diagnostics (``request-id``, ``date``, ``client-request-id``);
- ``details``: a list of ``{code, message, target}`` (``publicErrorDetail``).

A failed driveItem copy may answer an error with no ``code`` at all, only a ``message`` and ``details`` whose
codes agree (Graph beta driveItem copy, example 5: ``nameAlreadyExists`` for each conflicting child). The code
is then the one the details agree on. Everything the peer sent is kept, bounded: relay records it in events
that must stay small, and a peer may send anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from relay.core import jsonfast

__all__ = ["MAX_DETAILS", "GraphError", "graph_error"]

#: details kept per error (the rest are counted in ``detailsOmitted``)
MAX_DETAILS = 20
_MAX_TEXT = 1024  # characters of a code, message or target
_MAX_DETAIL_TEXT = 256  # characters of each field of a detail
_MAX_INNER = 2048  # bytes of the innerError as JSON
_INNER_DEPTH = 4
_INNER_ITEMS = 20
_DETAIL_FIELDS = ("code", "message", "target")


@dataclass(slots=True)
class GraphError:
    """One Graph error object, bounded."""

    code: str | None = None
    message: str | None = None
    target: str | None = None
    inner: dict[str, Any] | None = None
    details: list[dict[str, str]] = field(default_factory=list)
    details_omitted: int = 0

    def extras(self) -> dict[str, Any]:
        """The error's members beyond code, message and target, as relay's events carry them (none when absent)."""
        extra: dict[str, Any] = {}
        if self.inner is not None:
            extra["innerError"] = self.inner
        if self.details:
            extra["details"] = self.details
        if self.details_omitted:
            extra["detailsOmitted"] = self.details_omitted
        return extra


def _text(value: Any, limit: int = _MAX_TEXT) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _detail(raw: dict[str, Any]) -> dict[str, str]:
    return {key: text for key in _DETAIL_FIELDS if (text := _text(raw.get(key), _MAX_DETAIL_TEXT)) is not None}


def _agreed_code(details: list[dict[str, Any]]) -> str | None:
    """The code every detail that has one agrees on (compared case-insensitively), else None."""
    codes = [code for d in details if (code := _text(d.get("code")))]
    if codes and len({c.lower() for c in codes}) == 1:
        return codes[0]
    return None


def _bounded(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON value cut to a few levels, items and characters."""
    if isinstance(value, str):
        return value[:_MAX_DETAIL_TEXT]
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # NaN reaches here from a lenient parse: not JSON
    if isinstance(value, bool | int) or value is None:
        return value
    if depth >= _INNER_DEPTH:
        return None
    if isinstance(value, dict):
        items = list(value.items())[:_INNER_ITEMS]
        return {str(key)[:64]: _bounded(item, depth + 1) for key, item in items}
    if isinstance(value, list):
        return [_bounded(item, depth + 1) for item in value[:_INNER_ITEMS]]
    return None


def _inner(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or not raw:
        return None
    inner: dict[str, Any] = _bounded(raw)
    if len(jsonfast.dumps(inner)) > _MAX_INNER:  # still too large: its plain members only
        inner = {key: value for key, value in inner.items() if not isinstance(value, dict | list)}
        if len(jsonfast.dumps(inner)) > _MAX_INNER:
            return {"omitted": "innerError over 2 KiB"}
    return inner


def graph_error(doc: Any) -> GraphError | None:
    """The ``error`` member of a JSON body, when it is an error object with anything in it."""
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return None
    raw_details = error.get("details")
    details = [d for d in raw_details if isinstance(d, dict)] if isinstance(raw_details, list) else []
    found = GraphError(
        code=_text(error.get("code")) or _agreed_code(details),
        message=_text(error.get("message")),
        target=_text(error.get("target")),
        inner=_inner(error["innerError"] if "innerError" in error else error.get("innererror")),
        details=[kept for d in details[:MAX_DETAILS] if (kept := _detail(d))],
        details_omitted=max(0, len(details) - MAX_DETAILS),
    )
    if found.code is None and found.message is None and not found.details and found.inner is None:
        return None
    return found
