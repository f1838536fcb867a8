"""Deliveries: a job's attempts and events, redelivering any of its events, and the caller's dead letters."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay.api import params
from relay.api.access import owned_job
from relay.api.http import json_object, json_response
from relay.api.middlewares import OWNER
from relay.api.problems import ProblemError
from relay.api.routing import AUTH, BODY, LIMIT, OWNED, ApiRoutes, Operation, json_answer, json_body, problem
from relay.api.typedefs import STORE
from relay.core.events import isoformat
from relay.core.schema import Event, EventType, Job
from relay.store.listings import DeadLetterRow

__all__ = ["routes"]

routes = ApiRoutes()
_TERMINAL = EventType.terminal_types()


@routes.get(
    "/v1/jobs/{job_id}/deliveries",
    Operation(
        "listDeliveries",
        {"200": json_answer("Deliveries", "The job's newest 1,000 delivery attempts and every event"), **OWNED},
    ),
)
async def list_deliveries(request: web.Request) -> web.Response:
    job = await owned_job(request)
    store = request.app[STORE]
    events = [e for e in await store.events(await store.event_ids(job.id), job.id) if e is not None]
    _, delivery = await store.job_info(job)
    next_attempt = delivery.next_attempt if delivery is not None else None
    attempts = await store.attempts(job.id)
    readable = [a for a in attempts if a is not None]
    answer: dict[str, Any] = {
        "jobId": job.id,
        "deliveries": readable,
        "events": [_event_summary(e) for e in events],
        "nextAttemptDateTime": isoformat(next_attempt / 1000) if next_attempt is not None else None,
    }
    if len(readable) < len(attempts):  # records damaged in Redis: the rest is answered, these counted
        answer["unreadableAttempts"] = len(attempts) - len(readable)
    return json_response(answer)


def _event_summary(event: Event) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "eventId": event.id,
        "type": event.type,
        "sequence": event.sequence,
        "state": event.state,
        "attempts": event.attempts,
    }
    if event.unreadable:  # fields damaged in Redis: shown at their defaults, named
        summary["unreadable"] = list(event.unreadable)
    return summary


@routes.post(
    "/v1/jobs/{job_id}/redeliver",
    Operation(
        "redeliver",
        {
            "202": json_answer("Redelivered", "The event is queued again with the same webhook-id"),
            "409": problem("No body, and no final event yet"),
            "422": problem("eventId is not an event of this job"),
            **OWNED,
            **{code: answer for code, answer in BODY.items() if code != "422"},
        },
        description="Send one of the job's events again with the same webhook-id, delivered or not: the one "
        "`eventId` names, or without a body the job's final event. Its attempts go on counting; the delivery "
        "schedule starts again.",
        extra={"requestBody": {**json_body("Redeliver"), "required": False}},
    ),
)
async def redeliver(request: web.Request) -> web.Response:
    """Send one of the job's events again, same webhook-id: ``{"eventId"}`` any of them, no body its final one."""
    job = await owned_job(request)
    event = await _chosen(request, job) if request.body_exists else await _final(request, job)
    if not await request.app[STORE].redeliver(job.id, event.id):
        raise ProblemError(404, "Not Found", "the event has expired")
    return json_response({"jobId": job.id, "eventId": event.id, "type": event.type}, status=202)


async def _final(request: web.Request, job: Job) -> Event:
    store = request.app[STORE]
    event_ids = await store.event_ids(job.id)
    last = await store.event(event_ids[-1], job.id) if event_ids else None
    if last is None or last.type not in _TERMINAL:
        raise ProblemError(
            409,
            "No terminal event",
            'the job has no final event (job.completed, job.failed) yet; name another with {"eventId": ...}',
        )
    return last


async def _chosen(request: web.Request, job: Job) -> Event:
    from relay.api.models import Redeliver  # pydantic: loaded by the first request that validates a body

    chosen = Redeliver.model_validate(await json_object(request))
    event = await request.app[STORE].event(chosen.event_id, job.id)
    if event is None or event.job != job.id:
        message = "no event of this job has this id (GET /v1/jobs/{id}/deliveries lists them)"
        raise ProblemError(422, "Invalid request body", message, errors=[{"field": "eventId", "message": message}])
    return event


@routes.get(
    "/v1/dead-letters",
    Operation(
        "listDeadLetters",
        description="The caller's dead-lettered events (delivery schedule exhausted), newest first.",
        parameters=[LIMIT],
        responses={"200": json_answer("DeadLetters", "Dead letters"), **AUTH, "422": problem("Bad limit")},
    ),
)
async def dead_letters(request: web.Request) -> web.Response:
    """The caller's dead-lettered events (delivery schedule exhausted), newest first."""
    rows = await request.app[STORE].dead_letters(request[OWNER], params.limit(request))
    return json_response({"deadLetters": [_dead_letter(row) for row in rows]})


def _dead_letter(row: DeadLetterRow) -> dict[str, Any]:
    letter: dict[str, Any] = {
        "eventId": row.event_id,
        "jobId": row.job_id,
        "type": row.type,
        "terminal": row.type in _TERMINAL,
        "sequence": row.sequence,
        "attempts": row.attempts,
        "deadDateTime": isoformat(row.dead_ms / 1000),
    }
    if row.unreadable:  # fields damaged in Redis: shown at their defaults, named
        letter["unreadable"] = list(row.unreadable)
    return letter
