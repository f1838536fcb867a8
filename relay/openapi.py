"""The OpenAPI 3.1 document of the API, with request schemas taken from the pydantic models."""

from __future__ import annotations

import functools
from typing import Any

from relay import __version__
from relay.models import JobCreate, JobPatch

__all__ = ["openapi_document"]

_PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
    },
    "required": ["type", "title", "status"],
}
_NULLABLE_STR = {"type": ["string", "null"]}
_JOB = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["notStarted", "inProgress", "completed", "failed", "cancelled"]},
        "operation": _NULLABLE_STR,
        "percentageComplete": {"type": "number", "minimum": 0, "maximum": 100},
        "resourceId": _NULLABLE_STR,
        "driveItem": {"type": ["object", "null"]},
        "resolutionError": {"type": ["object", "null"]},
        "error": {"type": ["object", "null"]},
        "metadata": {"type": ["object", "null"]},
        "createdDateTime": {"type": "string", "format": "date-time"},
        "lastPolledDateTime": {"type": ["string", "null"], "format": "date-time"},
        "nextPollDateTime": {"type": ["string", "null"], "format": "date-time"},
        "pollCount": {"type": "integer", "minimum": 0},
        "callbackUrl": {"type": "string"},
        "driveItemUrl": _NULLABLE_STR,
        "monitorHost": {"type": "string"},
        "sequence": {"type": "integer", "minimum": 0},
    },
    "required": ["id", "status", "percentageComplete", "createdDateTime", "pollCount", "callbackUrl", "sequence"],
}
_ATTEMPT = {
    "type": "object",
    "properties": {
        "eventId": {"type": "string"},
        "type": {"type": "string"},
        "sequence": {"type": "integer"},
        "attempt": {"type": "integer"},
        "outcome": {"type": "string", "enum": ["delivered", "failed", "dead", "gone", "superseded"]},
        "status": {"type": ["integer", "null"]},
        "error": _NULLABLE_STR,
        "durationMs": {"type": "number"},
        "time": {"type": "string", "format": "date-time"},
    },
    "required": ["eventId", "type", "attempt", "outcome", "time"],
}


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


_JOB_ID_PARAM = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
_COMMON = {
    "401": _problem("Missing or unknown bearer token"),
    "404": _problem("No such job (or another token's)"),
    "503": _problem("Redis unreachable, or a change not confirmed by RELAY_REDIS_MIN_REPLICAS replicas in time"),
}
_LIMIT_PARAM = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
}
_SSE = {"text/event-stream": {"schema": {"type": "string"}}}
_LIVE_PATHS: dict[str, Any] = {
    "/v1/jobs/{job_id}/events": {
        "parameters": [_JOB_ID_PARAM],
        "get": {
            "operationId": "streamJobEvents",
            "description": (
                "Server-Sent Events: every event of the job in sequence order, each exactly as POSTed to the "
                "callback. Per message: `id` (the webhook-id), `event` (the type), `webhook-id`, "
                "`webhook-timestamp` and `webhook-signature` fields (signed now, verify as webhook headers), "
                "then `data` (the JSON body). Resumes after `Last-Event-ID`. A `: keep-alive` comment every "
                "15 s; the stream ends after job.completed or job.failed (or when the job is cancelled)."
            ),
            "parameters": [{"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The event stream", "content": _SSE}, **_COMMON},
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
            "parameters": [_LIMIT_PARAM],
            "responses": {
                "200": {"description": "The event stream", "content": _SSE},
                "401": _COMMON["401"],
                "422": _problem("Bad limit"),
            },
        }
    },
    "/v1/dead-letters": {
        "get": {
            "operationId": "listDeadLetters",
            "description": "The caller's dead-lettered events (delivery schedule exhausted), newest first.",
            "parameters": [_LIMIT_PARAM],
            "responses": {
                "200": {
                    "description": "Dead letters",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "deadLetters": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "eventId": {"type": "string"},
                                                "jobId": {"type": "string"},
                                                "type": {"type": "string"},
                                                "sequence": {"type": "integer"},
                                                "attempts": {"type": "integer"},
                                                "deadDateTime": {"type": "string", "format": "date-time"},
                                            },
                                        },
                                    }
                                },
                                "required": ["deadLetters"],
                            }
                        }
                    },
                },
                "401": _COMMON["401"],
                "422": _problem("Bad limit"),
            },
        }
    },
    "/ui": {
        "get": {
            "operationId": "dashboard",
            "security": [],
            "description": "The read-only dashboard (HTML); its data comes from the API with the user's token.",
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }
    },
}


@functools.cache
def openapi_document() -> dict[str, Any]:
    body_errors = {
        "400": _problem("Malformed JSON"),
        "413": _problem("Body over 64 KiB"),
        "415": _problem("Not application/json"),
        "422": _problem("Invalid fields"),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "relay",
            "version": __version__,
            "description": (
                "Register a Microsoft Graph monitor URL once; receive signed progress and completion webhooks."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "JobCreate": JobCreate.model_json_schema(by_alias=True),
                "JobPatch": JobPatch.model_json_schema(by_alias=True),
                "Job": _JOB,
                "Problem": _PROBLEM,
                "DeliveryAttempt": _ATTEMPT,
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/jobs": {
                "get": {
                    "operationId": "listJobs",
                    "description": "The caller's jobs, newest first. A page may hold fewer than `limit` jobs "
                    "while `nextCursor` is not null.",
                    "parameters": [
                        _LIMIT_PARAM,
                        {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "One page of jobs",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                                            "nextCursor": _NULLABLE_STR,
                                        },
                                        "required": ["jobs", "nextCursor"],
                                    }
                                }
                            },
                        },
                        "401": _COMMON["401"],
                        "422": _problem("Bad limit or cursor"),
                    },
                },
                "post": {
                    "operationId": "createJob",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}}},
                    },
                    "responses": {
                        "201": _json("Job", "Created"),
                        "200": _json("Job", "The job an earlier request with this Idempotency-Key created"),
                        "409": _problem("Idempotency-Key reused with another body"),
                        "401": _COMMON["401"],
                        "503": _COMMON["503"],
                        **body_errors,
                    },
                },
            },
            "/v1/jobs/{job_id}": {
                "parameters": [_JOB_ID_PARAM],
                "get": {
                    "operationId": "getJob",
                    "parameters": [
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "description": "long-poll: answer once the job's sequence differs from `sequence`, "
                            "it has ended, or after this many seconds",
                            "schema": {"type": "number", "minimum": 0, "maximum": 60},
                        },
                        {
                            "name": "sequence",
                            "in": "query",
                            "required": False,
                            "description": "with `wait`: the sequence the client has seen (default: the current one)",
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    "responses": {"200": _json("Job", "The job"), "422": _problem("Bad wait or sequence"), **_COMMON},
                },
                "patch": {
                    "operationId": "patchJob",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobPatch"}}},
                    },
                    "responses": {
                        "200": _json("Job", "Updated"),
                        "409": _problem("The job has ended"),
                        **_COMMON,
                        **body_errors,
                    },
                },
                "delete": {
                    "operationId": "deleteJob",
                    "responses": {"204": {"description": "No longer tracked"}, **_COMMON},
                },
            },
            "/v1/jobs/{job_id}/deliveries": {
                "parameters": [_JOB_ID_PARAM],
                "get": {
                    "operationId": "listDeliveries",
                    "responses": {
                        "200": {
                            "description": "Every delivery attempt and every event of the job",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "jobId": {"type": "string"},
                                            "deliveries": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/DeliveryAttempt"},
                                            },
                                            "events": {"type": "array", "items": {"type": "object"}},
                                        },
                                        "required": ["jobId", "deliveries", "events"],
                                    }
                                }
                            },
                        },
                        **_COMMON,
                    },
                },
            },
            "/v1/jobs/{job_id}/redeliver": {
                "parameters": [_JOB_ID_PARAM],
                "post": {
                    "operationId": "redeliver",
                    "responses": {
                        "202": {
                            "description": "The terminal event is queued again with the same webhook-id",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "409": _problem("No terminal event yet"),
                        **_COMMON,
                    },
                },
            },
            **_LIVE_PATHS,
            "/healthz": {
                "get": {"operationId": "healthz", "security": [], "responses": {"200": {"description": "Alive"}}}
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "security": [],
                    "responses": {"200": {"description": "Redis reachable"}, "503": _problem("Redis unreachable")},
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "security": [],
                    "responses": {"200": {"description": "Prometheus text"}},
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "security": [],
                    "responses": {"200": {"description": "This document"}},
                }
            },
        },
    }
