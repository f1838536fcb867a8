"""What the API answers and what relay POSTs: pydantic models, the source of the OpenAPI document.

Each model sits beside the function that renders it from the stored records (``job_view`` beside
:class:`JobView`): the renderers build plain dicts on the hot paths, and the tests check every answer and
every event against these models, so the document and the wire cannot drift apart.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from relay.api.views import delivery_state, job_view
from relay.core.schema import DeliveryOutcome, EventState, EventType, JobStatus

__all__ = [
    "EVENT_MODELS",
    "DeadLetter",
    "DeadLetters",
    "Deliveries",
    "DeliveryAttempt",
    "DeliveryState",
    "ErrorDetail",
    "EventSummary",
    "GraphRefusal",
    "JobError",
    "JobPage",
    "JobView",
    "Problem",
    "Redelivered",
    "delivery_state",
    "job_view",
]


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", defer_build=True)


class ErrorDetail(_Out):
    """One entry of a Graph error's ``details`` (Graph's publicErrorDetail), as the monitor wrote it."""

    code: str | None = None
    message: str | None = None
    target: str | None = None


class JobError(_Out):
    """Why a job failed (``job.failed``'s ``error``, and the job's): relay's ``code`` and the reasons it was given."""

    code: str = Field(
        description="monitorFailed, monitorGone, monitorHttp<status>, unknownMonitorStatus, invalidMonitorResponse, "
        "timeout, callbackGone"
    )
    message: str | None = Field(default=None, description="the monitor's error.message, else its statusDescription")
    monitor_status: str | None = Field(
        default=None, alias="monitorStatus", description="the status word of the answer that ended the job"
    )
    error_code: str | None = Field(
        default=None,
        alias="errorCode",
        description="the monitor's errorCode, else its error.code, else the code its error.details agree on",
    )
    status_description: str | None = Field(default=None, alias="statusDescription")
    target: str | None = Field(default=None, description="the monitor's error.target")
    http_status: int | None = Field(
        default=None, alias="httpStatus", description="the HTTP status of the answer the error came from"
    )
    inner_error: dict[str, Any] | None = Field(
        default=None, alias="innerError", description="the monitor's error.innerError, bounded (2 KiB)"
    )
    details: list[ErrorDetail] | None = Field(
        default=None, description="the monitor's error.details: code, message and target of each, the first 20"
    )
    details_omitted: int | None = Field(
        default=None, alias="detailsOmitted", ge=1, description="error.details beyond the first 20, not kept"
    )


class DeliveryState(_Out):
    """Where a job's deliveries stand: its newest event (for an ended job, its final one) and what comes next."""

    event_id: str = Field(alias="eventId")
    type: EventType
    sequence: int = Field(ge=0, description="1, 2, 3...; 0 only when it could not be read (the job's unreadable)")
    state: EventState = Field(
        description="delivered; pending or retrying (not yet: see nextAttemptDateTime); dead (the schedule is "
        "exhausted: redeliver it); gone (the callback answered 410); cancelled"
    )
    attempts: int = Field(ge=0, description="every attempt to deliver it, redeliveries included")
    waiting: int = Field(ge=0, description="events of the job not yet delivered")
    next_attempt_date_time: str | None = Field(
        alias="nextAttemptDateTime",
        json_schema_extra={"format": "date-time"},
        description="when the next delivery attempt starts (now while one runs); null when nothing waits",
    )
    last_error: str | None = Field(
        alias="lastError", description="how the newest attempt failed (host, port and cause), null if it did not"
    )
    last_attempt_date_time: str | None = Field(alias="lastAttemptDateTime", json_schema_extra={"format": "date-time"})


class JobView(_Out):
    """A job as ``GET /v1/jobs/{id}`` shows it: never its monitor URL, authorization, credential or secret."""

    id: str
    status: JobStatus
    operation: str | None = Field(description="the monitor's own word (ItemCopy, itemCopy, DownloadUrl...)")
    percentage_complete: float = Field(alias="percentageComplete", ge=0, le=100)
    monitor_status: str | None = Field(
        alias="monitorStatus", description="the monitor's own status word in its last answer that relay recorded"
    )
    status_description: str | None = Field(
        alias="statusDescription", description="the monitor's statusDescription then (e.g. 'Completed 3/9 files')"
    )
    resource_id: str | None = Field(alias="resourceId")
    drive_item: dict[str, Any] | None = Field(alias="driveItem")
    resolution_error: dict[str, Any] | None = Field(alias="resolutionError")
    error: JobError | None
    metadata: dict[str, Any] | None
    created_date_time: str = Field(alias="createdDateTime", json_schema_extra={"format": "date-time"})
    last_polled_date_time: str | None = Field(alias="lastPolledDateTime", json_schema_extra={"format": "date-time"})
    next_poll_date_time: str | None = Field(alias="nextPollDateTime", json_schema_extra={"format": "date-time"})
    poll_count: int = Field(alias="pollCount", ge=0)
    callback_url: str = Field(alias="callbackUrl")
    drive_item_url: str | None = Field(alias="driveItemUrl")
    monitor_host: str | None = Field(alias="monitorHost")
    sequence: int = Field(ge=0)
    progress_interval: float | None = Field(alias="progressInterval", ge=1, le=3600)
    phase: Literal["tracking", "resolving", "awaitingAuthorization", "ended"] = Field(
        description="awaitingAuthorization: the DriveItem request was refused; PATCH a fresh authorization"
    )
    authorization_wait_until: str | None = Field(
        alias="authorizationWaitUntil", json_schema_extra={"format": "date-time"}
    )
    delivery: DeliveryState | None = Field(
        description="where its webhooks stand (a completed job whose job.completed is not delivered yet shows it "
        "here); null before its first event, and in the answer to its registration"
    )
    unreadable: list[str] | None = Field(
        default=None,
        description="only when some of what relay stored for the job could not be read (a value damaged in Redis): "
        "the stored fields shown at their defaults or null ('seq', 'metadata', 'event.state', 'attempt', "
        "'monitor'...)",
    )


class JobPage(_Out):
    jobs: list[JobView]
    next_cursor: str | None = Field(alias="nextCursor")


class DeliveryAttempt(_Out):
    event_id: str = Field(alias="eventId")
    type: EventType
    sequence: int
    attempt: int
    outcome: DeliveryOutcome
    status: int | None = None
    error: str | None = None
    duration_ms: float | None = Field(default=None, alias="durationMs")
    time: str = Field(json_schema_extra={"format": "date-time"})


class EventSummary(_Out):
    event_id: str = Field(alias="eventId")
    type: EventType
    sequence: int
    state: EventState
    attempts: int
    unreadable: list[str] | None = Field(
        default=None,
        description="only when some of the event's stored fields could not be read (a value damaged in Redis): "
        "those shown at their defaults ('seq', 'state', 'attempts'...)",
    )


class Deliveries(_Out):
    job_id: str = Field(alias="jobId")
    deliveries: list[DeliveryAttempt] = Field(description="the newest 1,000 attempts, oldest first")
    unreadable_attempts: int | None = Field(
        default=None,
        alias="unreadableAttempts",
        ge=1,
        description="only when some attempt records could not be read (damaged in Redis): how many, left out",
    )
    events: list[EventSummary]
    next_attempt_date_time: str | None = Field(
        alias="nextAttemptDateTime",
        json_schema_extra={"format": "date-time"},
        description="when the next delivery attempt starts (now while one runs); null when nothing waits",
    )


class Redelivered(_Out):
    job_id: str = Field(alias="jobId")
    event_id: str = Field(alias="eventId")
    type: EventType


class DeadLetter(_Out):
    event_id: str = Field(alias="eventId")
    job_id: str = Field(alias="jobId")
    type: EventType
    terminal: bool = Field(description="a job's final event (job.completed, job.failed)")
    sequence: int
    attempts: int
    dead_date_time: str = Field(alias="deadDateTime", json_schema_extra={"format": "date-time"})
    unreadable: list[str] | None = Field(
        default=None,
        description="only when some of the event's stored fields could not be read (a value damaged in Redis): "
        "those shown at their defaults ('seq', 'attempts'...)",
    )


class DeadLetters(_Out):
    dead_letters: list[DeadLetter] = Field(alias="deadLetters")


class FieldProblem(_Out):
    field: str
    message: str


class GraphRefusal(BaseModel):
    """``graphError`` of a problem: what Graph answered the ``action`` relay sent for the app."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", defer_build=True)

    status: int = Field(description="Graph's HTTP status")
    code: str | None = Field(description="its error.code, else the code its error.details agree on")
    message: str = Field(description="its error.message, else 'Graph answered <status>'")
    inner_error: dict[str, Any] | None = Field(default=None, alias="innerError", description="bounded (2 KiB)")
    details: list[ErrorDetail] | None = Field(default=None, description="the first 20")
    details_omitted: int | None = Field(default=None, alias="detailsOmitted", ge=1)
    retry_after: float | None = Field(
        default=None, alias="retryAfter", description="Graph's Retry-After in seconds (the answer's header: rounded up)"
    )


class Problem(BaseModel):
    """RFC 9457 problem details; extension members (``graphError``...) may follow."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] | None = None
    graph_error: GraphRefusal | None = Field(default=None, alias="graphError")


# -- the events relay POSTs (the OpenAPI document's ``webhooks``) ----------------------------------


class _EventData(_Out):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", defer_build=True)

    job_id: str = Field(alias="jobId")
    sequence: int = Field(ge=1, description="1, 2, 3... per job; events of a job arrive in this order")
    operation: str | None
    status: JobStatus
    percentage_complete: float = Field(alias="percentageComplete", ge=0, le=100)
    metadata: dict[str, Any] | None = Field(description="what the job was registered with, echoed")


class ProgressData(_EventData):
    """The status, percentageComplete or statusDescription changed since the last event."""

    monitor_status: str | None = Field(default=None, alias="monitorStatus", description="the monitor's own word")
    status_description: str | None = Field(default=None, alias="statusDescription")


class AuthorizationRequiredData(_EventData):
    """The DriveItem request was refused (401) or the token's exp had passed: PATCH /v1/jobs/{id} with a fresh
    authorization before waitUntil. At most maxAsks times per job."""

    resource_id: str | None = Field(alias="resourceId")
    http_status: int | None = Field(alias="httpStatus", description="401, or null when the token was not sent")
    reason: Literal["unauthorized", "tokenExpired"]
    wait_until: str = Field(alias="waitUntil", json_schema_extra={"format": "date-time"})
    ask: int = Field(ge=1)
    max_asks: int = Field(alias="maxAsks")


class CompletedData(_EventData):
    """Once, last: the action completed; driveItem, or resolutionError when it was not fetched."""

    resource_id: str | None = Field(alias="resourceId")
    drive_item: dict[str, Any] | None = Field(alias="driveItem")
    resolution_error: dict[str, Any] | None = Field(default=None, alias="resolutionError")


class FailedData(_EventData):
    """Once, last: the action failed, its monitor went away, or the job timed out."""

    error: JobError


def _event_model(event_type: EventType, data: type[_EventData]) -> type[BaseModel]:
    """The body of one event type; its docstring, when it is sent, is its data model's (the document's
    ``webhooks`` description)."""
    name = "".join(part[0].upper() + part[1:] for part in event_type.value.split(".")) + "Event"
    model: type[BaseModel] = create_model(
        name,
        __base__=_Out,
        __doc__=inspect.cleandoc(data.__doc__ or ""),
        type=(Literal[event_type.value], ...),  # type: ignore[arg-type]
        timestamp=(str, Field(json_schema_extra={"format": "date-time"})),
        data=(data, ...),
    )
    return model


#: one model per event type: what each webhook's JSON body is
EVENT_MODELS: dict[EventType, type[BaseModel]] = {
    EventType.PROGRESS: _event_model(EventType.PROGRESS, ProgressData),
    EventType.AUTHORIZATION_REQUIRED: _event_model(EventType.AUTHORIZATION_REQUIRED, AuthorizationRequiredData),
    EventType.COMPLETED: _event_model(EventType.COMPLETED, CompletedData),
    EventType.FAILED: _event_model(EventType.FAILED, FailedData),
}
