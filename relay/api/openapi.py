"""The OpenAPI 3.1 document of the API, generated from the pydantic models.

Every schema (requests, answers, problems, and under ``webhooks`` every event relay POSTs) comes from
:mod:`relay.api.models` and :mod:`relay.api.schemas`; only the paths are a table here.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from relay import __version__
from relay.api.models import JobCreate, JobPatch
from relay.api.schemas import (
    EVENT_MODELS,
    DeadLetters,
    Deliveries,
    JobPage,
    JobView,
    Problem,
    Redelivered,
)
from relay.core.schema import EventType

__all__ = ["openapi_document"]

#: component name -> (model, mode): request bodies are read ("validation"), answers written ("serialization")
_COMPONENTS: dict[str, tuple[type[BaseModel], str]] = {
    "JobCreate": (JobCreate, "validation"),
    "JobPatch": (JobPatch, "validation"),
    "Job": (JobView, "serialization"),
    "JobPage": (JobPage, "serialization"),
    "Deliveries": (Deliveries, "serialization"),
    "Redelivered": (Redelivered, "serialization"),
    "DeadLetters": (DeadLetters, "serialization"),
    "Problem": (Problem, "serialization"),
    **{model.__name__: (model, "serialization") for model in EVENT_MODELS.values()},
}
_WHEN = {
    EventType.PROGRESS: "The status, percentageComplete or statusDescription changed since the last event.",
    EventType.AUTHORIZATION_REQUIRED: (
        "The DriveItem request was refused (401) or the token's exp had passed: PATCH /v1/jobs/{id} with a fresh "
        "authorization before waitUntil. At most maxAsks times per job."
    ),
    EventType.COMPLETED: "Once, last: the action completed; driveItem, or resolutionError when it was not fetched.",
    EventType.FAILED: "Once, last: the action failed, its monitor went away, or the job timed out.",
}


def _schemas() -> dict[str, Any]:
    keyed = [(model, mode) for model, mode in _COMPONENTS.values()]
    refs, top = models_json_schema(keyed, by_alias=True, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    for name, (model, mode) in _COMPONENTS.items():
        ref = refs[(model, mode)]["$ref"].rsplit("/", 1)[1]  # type: ignore[index]
        if ref != name:
            schemas[name] = schemas.pop(ref)
    return schemas


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    param = {"name": name, "in": "query", "required": False, "schema": schema}
    return {**param, "description": description} if description else param


_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50})
_AUTH = {
    "401": _problem("Missing or unknown bearer token"),
    "503": _problem("Redis unreachable, or a change not confirmed by RELAY_REDIS_MIN_REPLICAS replicas in time"),
}
_OWNED = {**_AUTH, "404": _problem("No such job (or another token's)")}
_BODY = {
    "400": _problem("Malformed JSON"),
    "413": _problem("Body over 64 KiB"),
    "415": _problem("Not application/json"),
    "422": _problem("Invalid fields, hostile JSON, or a URL relay may not send to"),
}
_SSE = {"text/event-stream": {"schema": {"type": "string"}}}
_PUBLIC: dict[str, Any] = {"security": []}


def _body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _paths() -> dict[str, Any]:
    return {
        "/v1/jobs": {
            "get": {
                "operationId": "listJobs",
                "description": "The caller's jobs, newest first. A page may hold fewer than `limit` jobs while "
                "`nextCursor` is not null.",
                "parameters": [_LIMIT, _query("cursor", {"type": "string"})],
                "responses": {
                    "200": _json("JobPage", "One page of jobs"),
                    **_AUTH,
                    "422": _problem("Bad limit or cursor"),
                },
            },
            "post": {
                "operationId": "createJob",
                "description": "Register a monitor URL, or give `action` and relay starts the action on Graph.",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                ],
                "requestBody": _body("JobCreate"),
                "responses": {
                    "201": _json("Job", "Created"),
                    "200": _json("Job", "The job an earlier request with this Idempotency-Key created"),
                    "409": _problem("Idempotency-Key reused with another body, or still starting its action"),
                    "502": _problem("Graph failed the action, redirected it, or answered unusably"),
                    "503": _problem("Redis unreachable, a change not confirmed by replicas, or no credential token"),
                    "504": _problem("Graph did not answer the action in time"),
                    **_AUTH,
                    **_BODY,
                },
            },
        },
        "/v1/jobs/{job_id}": {
            "parameters": [_JOB_ID],
            "get": {
                "operationId": "getJob",
                "parameters": [
                    _query(
                        "wait",
                        {"type": "number", "minimum": 0, "maximum": 60},
                        "long-poll: answer once the job's sequence differs from `sequence`, it has ended, or after "
                        "this many seconds (it holds one of the token's RELAY_TENANT_MAX_STREAMS meanwhile)",
                    ),
                    _query(
                        "sequence",
                        {"type": "integer", "minimum": 0},
                        "with `wait`: the sequence the client has seen (default: the current one)",
                    ),
                ],
                "responses": {"200": _json("Job", "The job"), "422": _problem("Bad wait or sequence"), **_OWNED},
            },
            "patch": {
                "operationId": "patchJob",
                "requestBody": _body("JobPatch"),
                "responses": {"200": _json("Job", "Updated"), "409": _problem("The job has ended"), **_OWNED, **_BODY},
            },
            "delete": {
                "operationId": "deleteJob",
                "responses": {"204": {"description": "No longer tracked"}, **_OWNED},
            },
        },
        "/v1/jobs/{job_id}/deliveries": {
            "parameters": [_JOB_ID],
            "get": {
                "operationId": "listDeliveries",
                "responses": {
                    "200": _json("Deliveries", "Every delivery attempt and every event of the job"),
                    **_OWNED,
                },
            },
        },
        "/v1/jobs/{job_id}/redeliver": {
            "parameters": [_JOB_ID],
            "post": {
                "operationId": "redeliver",
                "responses": {
                    "202": _json("Redelivered", "The final event is queued again with the same webhook-id"),
                    "409": _problem("No final event yet"),
                    **_OWNED,
                },
            },
        },
        "/v1/jobs/{job_id}/events": {
            "parameters": [_JOB_ID],
            "get": {
                "operationId": "streamJobEvents",
                "description": (
                    "Server-Sent Events: every event of the job in sequence order, each exactly as POSTed to the "
                    "callback (see `webhooks`). Per message: `id` (the webhook-id), `event` (the type), "
                    "`webhook-id`, `webhook-timestamp` and `webhook-signature` fields (signed as of the event's "
                    "recording: the same frame on every read; verify as webhook headers), then `data` (the JSON "
                    "body). Resumes after `Last-Event-ID`. A `: keep-alive` comment every 15 s; the stream ends "
                    "after the final event (or when the job is cancelled)."
                ),
                "parameters": [
                    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "The event stream", "content": _SSE}, **_OWNED},
            },
        },
        "/v1/stream": {
            "get": {
                "operationId": "streamJobs",
                "description": (
                    "Server-Sent Events of the caller's `limit` newest jobs: `event: job` with the job (as getJob "
                    "returns it) for each of them on connect, then whenever one changes (new event, status, "
                    "delivery attempt); jobs created meanwhile join. Never ends by itself."
                ),
                "parameters": [_LIMIT],
                "responses": {
                    "200": {"description": "The event stream", "content": _SSE},
                    **_AUTH,
                    "422": _problem("Bad limit"),
                },
            }
        },
        "/v1/dead-letters": {
            "get": {
                "operationId": "listDeadLetters",
                "description": "The caller's dead-lettered events (delivery schedule exhausted), newest first.",
                "parameters": [_LIMIT],
                "responses": {"200": _json("DeadLetters", "Dead letters"), **_AUTH, "422": _problem("Bad limit")},
            }
        },
        "/ui": {
            "get": {
                "operationId": "dashboard",
                **_PUBLIC,
                "description": "The read-only dashboard (HTML); its data comes from the API with the user's token.",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
            }
        },
        "/healthz": {"get": {"operationId": "healthz", **_PUBLIC, "responses": {"200": {"description": "Alive"}}}},
        "/readyz": {
            "get": {
                "operationId": "readyz",
                **_PUBLIC,
                "responses": {"200": {"description": "Redis reachable"}, "503": _problem("Redis unreachable")},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                **_PUBLIC,
                "description": "Prometheus text; with RELAY_METRICS_TOKEN set, only for that bearer token.",
                "responses": {"200": {"description": "Prometheus text"}, "401": _problem("RELAY_METRICS_TOKEN needed")},
            }
        },
        "/openapi.json": {
            "get": {"operationId": "openapi", **_PUBLIC, "responses": {"200": {"description": "This document"}}}
        },
    }


def _webhooks() -> dict[str, Any]:
    """Every event relay POSTs to a job's callback (signed with Standard Webhooks headers)."""
    hooks: dict[str, Any] = {}
    for event_type, model in EVENT_MODELS.items():
        hooks[event_type.value] = {
            "post": {
                "operationId": f"event{model.__name__}",
                "description": _WHEN[event_type],
                "parameters": [
                    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
                    for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
                ],
                "requestBody": _body(model.__name__),
                "responses": {
                    "200": {"description": "Any 2xx: delivered"},
                    "410": {"description": "Gone: relay stops delivering and tracking the job"},
                },
            }
        }
    return hooks


@functools.cache
def openapi_document() -> dict[str, Any]:
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
        "paths": _with_unreadable(_paths()),
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
