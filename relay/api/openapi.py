"""The OpenAPI 3.1 document of the API, generated from the route tables and the pydantic models.

The paths come from the routes the app serves (each declared with its operation, :mod:`relay.api.routing`);
every schema (requests, answers, problems, and under ``webhooks`` every event relay POSTs, described by its
model's docstring) from :mod:`relay.api.models` and :mod:`relay.api.schemas`.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from relay import __version__
from relay.api.models import JobCreate, JobPatch, Redeliver
from relay.api.routing import ApiRoutes, json_body, problem, route_paths
from relay.api.schemas import (
    EVENT_MODELS,
    DeadLetters,
    Deliveries,
    JobPage,
    JobView,
    Problem,
    Redelivered,
)

__all__ = ["openapi_document"]

_REF = "#/components/schemas/"

#: component name -> (model, mode): request bodies are read ("validation"), answers written ("serialization")
_COMPONENTS: dict[str, tuple[type[BaseModel], str]] = {
    "JobCreate": (JobCreate, "validation"),
    "JobPatch": (JobPatch, "validation"),
    "Redeliver": (Redeliver, "validation"),
    "Job": (JobView, "serialization"),
    "JobPage": (JobPage, "serialization"),
    "Deliveries": (Deliveries, "serialization"),
    "Redelivered": (Redelivered, "serialization"),
    "DeadLetters": (DeadLetters, "serialization"),
    "Problem": (Problem, "serialization"),
    **{model.__name__: (model, "serialization") for model in EVENT_MODELS.values()},
}


def _schemas() -> dict[str, Any]:
    """Every model's JSON schema under its component name (a model renamed here, such as ``JobView`` as
    ``Job``, is renamed in every reference to it as well: in ``JobPage.jobs`` too)."""
    keyed = [(model, mode) for model, mode in _COMPONENTS.values()]
    refs, top = models_json_schema(keyed, by_alias=True, ref_template=_REF + "{model}")  # type: ignore[arg-type]
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    renamed: dict[str, str] = {}
    for name, (model, mode) in _COMPONENTS.items():
        ref = refs[(model, mode)]["$ref"].rsplit("/", 1)[1]  # type: ignore[index]
        if ref != name:
            schemas[name] = schemas.pop(ref)
            renamed[_REF + ref] = _REF + name
    result: dict[str, Any] = _rename_refs(schemas, renamed)
    return result


def _rename_refs(node: Any, renamed: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: renamed.get(value, value) if key == "$ref" else _rename_refs(value, renamed)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rename_refs(item, renamed) for item in node]
    return node


def _webhooks() -> dict[str, Any]:
    """Every event relay POSTs to a job's callback (signed with Standard Webhooks headers)."""
    hooks: dict[str, Any] = {}
    for event_type, model in EVENT_MODELS.items():
        hooks[event_type.value] = {
            "post": {
                "operationId": f"event{model.__name__}",
                "description": model.__doc__,
                "parameters": [
                    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
                    for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
                ],
                "requestBody": json_body(model.__name__),
                "responses": {
                    "200": {"description": "Any 2xx: delivered"},
                    "410": {"description": "Gone: relay stops delivering and tracking the job"},
                },
            }
        }
    return hooks


@functools.cache
def openapi_document(tables: tuple[ApiRoutes, ...]) -> dict[str, Any]:
    """The document of the routes in ``tables`` (``relay.api.app.ROUTES``: what the app serves)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "relay",
            "version": __version__,
            "description": "Register a Microsoft Graph monitor URL (or the action) once; receive signed progress and "
            "completion webhooks.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": _schemas()},
        "security": [{"bearer": []}],
        "paths": _with_guard(_with_unreadable(route_paths(tables))),
        "webhooks": _webhooks(),
    }


#: what aiohttp's HTTP parser answers, before relay sees the request, for a request line or header over 8 KiB
_UNREADABLE = "The HTTP request could not be read (a request line or header over 8 KiB): answered by the HTTP server"


def _with_unreadable(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation may answer 400 in text/plain from the HTTP server itself (merged with its own 400s)."""
    text = {"text/plain": {"schema": {"type": "string"}}}
    for item in paths.values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            own = operation["responses"].get("400")
            if own is None:
                operation["responses"]["400"] = {"description": _UNREADABLE, "content": text}
            else:
                merged = {**own, "content": {**own.get("content", {}), **text}}
                operation["responses"]["400"] = {**merged, "description": f"{own['description']}; or: {_UNREADABLE}"}
    return paths


#: the loopback guard's answer (relay.api.middlewares.loopback_guard), before any route sees the request
_GUARDED = (
    "Without RELAY_API_TOKENS: the request was addressed to a name other than a loopback one (Host), or a page of "
    "another origin asked for a change (Origin)"
)


def _with_guard(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation may answer 403 from the loopback guard of a relay without API tokens."""
    for item in paths.values():
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("403", problem(_GUARDED))
    return paths
