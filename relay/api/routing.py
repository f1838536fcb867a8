"""One table for each resource's routes and their OpenAPI operations.

A handler is declared once, with what the document says of it beside it::

    @routes.get("/v1/jobs", Operation("listJobs", {"200": json_answer("JobPage", "One page of jobs"), **AUTH}))

The app adds the table (it is a sequence of aiohttp route definitions) and :mod:`relay.api.openapi` builds
the document's ``paths`` from the same tables, so a route cannot be served undocumented or documented unserved.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from aiohttp import hdrs, web

__all__ = [
    "AUTH",
    "BODY",
    "OWNED",
    "SSE",
    "ApiRoutes",
    "Operation",
    "documented_queries",
    "json_answer",
    "json_body",
    "openapi_path",
    "problem",
    "query",
    "route_paths",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    """The OpenAPI operation object of one route (its path parameters come from the route's path)."""

    operation_id: str
    responses: Mapping[str, Any]
    description: str | None = None
    parameters: Sequence[Mapping[str, Any]] = ()
    #: the component schema of a required JSON request body
    body: str | None = None
    #: answers without a bearer token
    public: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operationId": self.operation_id}
        if self.public:
            out["security"] = []
        if self.description:
            out["description"] = self.description
        if self.parameters:
            out["parameters"] = [dict(p) for p in self.parameters]
        if self.body:
            out["requestBody"] = json_body(self.body)
        out["responses"] = {status: dict(answer) for status, answer in self.responses.items()}
        return {**out, **self.extra}


@dataclass(frozen=True)
class DocumentedRoute:
    method: str
    path: str
    operation: Operation


class ApiRoutes(Sequence[web.AbstractRouteDef]):
    """aiohttp's route definitions (``app.add_routes(routes)``), each with its :class:`Operation`."""

    def __init__(self) -> None:
        self._defs: list[web.AbstractRouteDef] = []
        self.documented: list[DocumentedRoute] = []

    def route(self, method: str, path: str, operation: Operation, **kwargs: Any) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self._defs.append(web.RouteDef(method, path, handler, kwargs))
            self.documented.append(DocumentedRoute(method, path, operation))
            return handler

        return register

    def get(self, path: str, operation: Operation) -> Callable[[Handler], Handler]:
        return self.route(hdrs.METH_GET, path, operation)  # aiohttp answers HEAD as well, as a GET without body

    def post(self, path: str, operation: Operation) -> Callable[[Handler], Handler]:
        return self.route(hdrs.METH_POST, path, operation)

    def patch(self, path: str, operation: Operation) -> Callable[[Handler], Handler]:
        return self.route(hdrs.METH_PATCH, path, operation)

    def delete(self, path: str, operation: Operation) -> Callable[[Handler], Handler]:
        return self.route(hdrs.METH_DELETE, path, operation)

    @overload
    def __getitem__(self, index: int) -> web.AbstractRouteDef: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[web.AbstractRouteDef]: ...

    def __getitem__(self, index: int | slice) -> web.AbstractRouteDef | Sequence[web.AbstractRouteDef]:
        return self._defs[index]

    def __iter__(self) -> Iterator[web.AbstractRouteDef]:
        return iter(self._defs)

    def __len__(self) -> int:
        return len(self._defs)


def openapi_path(path: str) -> str:
    """``/ui/static/{name:[^/]+}`` as OpenAPI writes it: ``/ui/static/{name}``."""
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", r"{\1}", path)


# -- fragments the operations share ---------------------------------------------------------------


def problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def json_answer(component: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
    }


def json_body(component: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{component}"}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    param = {"name": name, "in": "query", "required": False, "schema": schema}
    return {**param, "description": description} if description else param


LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50})
AUTH = {
    "401": problem("Missing or unknown bearer token"),
    "503": problem("Redis unreachable, or a change not confirmed by RELAY_REDIS_MIN_REPLICAS replicas in time"),
}
OWNED = {**AUTH, "404": problem("No such job (or another token's)")}
BODY = {
    "400": problem("Malformed JSON"),
    "413": problem("Body over 64 KiB"),
    "415": problem("Not application/json"),
    "422": problem("Invalid fields, hostile JSON, or a URL relay may not send to"),
}
SSE = {"text/event-stream": {"schema": {"type": "string"}}}


def route_paths(tables: Sequence[ApiRoutes]) -> dict[str, Any]:
    """The document's paths, from the route tables the app serves: a path's template parameters from its route
    (without the answers every operation shares, which :func:`openapi_document` adds; no model's schema)."""
    paths: dict[str, Any] = {}
    for route in (route for table in tables for route in table.documented):
        path = openapi_path(route.path)
        item = paths.setdefault(path, {})
        names = re.findall(r"\{(\w+)\}", path)
        if names and "parameters" not in item:
            item["parameters"] = [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
            ]
        method = route.method.lower()
        if method in item:
            raise ValueError(f"{route.method} {path} is routed twice")
        item[method] = route.operation.render()
    return paths


def documented_queries(paths: dict[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """(path, method) -> the names of the query parameters the document's ``paths`` give that operation; a
    deepObject parameter ``name`` (written ``name[key]=value``) as ``name[``."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    for path, item in paths.items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                params = [*item.get("parameters", []), *operation.get("parameters", [])]
                out[(path, method)] = frozenset(
                    p["name"] + "[" if p.get("style") == "deepObject" else p["name"]
                    for p in params
                    if p.get("in") == "query"
                )
    return out
