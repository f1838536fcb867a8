"""RFC 9457 problem details."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = ["PROBLEM_JSON", "ProblemError", "problem_response"]

PROBLEM_JSON = "application/problem+json"


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    if extra:  # RFC 9457 extension members
        body.update(extra)
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_JSON, headers=headers)


class ProblemError(Exception):
    """Raised by views; the error middleware turns it into problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.extra = extra

    def response(self) -> web.Response:
        return problem_response(
            self.status, self.title, self.detail, errors=self.errors, headers=self.headers, extra=self.extra
        )
