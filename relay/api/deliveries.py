"""Deliveries: a job's attempts and events, redelivering its final event, and the caller's dead letters."""

from __future__ import annotations

from aiohttp import web

from relay.api import params
from relay.api.access import owned_job
from relay.api.http import json_response
from relay.api.middlewares import OWNER
from relay.api.problems import ProblemError
from relay.api.routing import AUTH, LIMIT, OWNED, ApiRoutes, Operation, json_answer, problem
from relay.api.typedefs import STORE
from relay.core.events import isoformat
from relay.core.schema import EventType
from relay.store import queries

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
    events = [e for e in await store.events(await store.event_ids(job.id)) if e is not None]
    return json_response(
        {
            "jobId": job.id,
            "deliveries": await store.attempts(job.id),
            "events": [
                {"eventId": e.id, "type": e.type, "sequence": e.sequence, "state": e.state, "attempts": e.attempts}
                for e in events
            ],
        }
    )


@routes.post(
    "/v1/jobs/{job_id}/redeliver",
    Operation(
        "redeliver",
        {
            "202": json_answer("Redelivered", "The final event is queued again with the same webhook-id"),
            "409": problem("No final event yet"),
            **OWNED,
        },
    ),
)
async def redeliver(request: web.Request) -> web.Response:
    job = await owned_job(request)
    store = request.app[STORE]
    event_ids = await store.event_ids(job.id)
    last = await store.event(event_ids[-1]) if event_ids else None
    if last is None or last.type not in _TERMINAL:
        raise ProblemError(409, "No terminal event", "the job has no final event (job.completed, job.failed) yet")
    await store.redeliver(job.id, last.id)
    return json_response({"jobId": job.id, "eventId": last.id, "type": last.type}, status=202)


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
    rows = await queries.dead_letters(request.app[STORE], request[OWNER], params.limit(request))
    return json_response(
        {
            "deadLetters": [
                {
                    "eventId": row.event_id,
                    "jobId": row.job_id,
                    "type": row.type,
                    "terminal": row.type in _TERMINAL,
                    "sequence": row.sequence,
                    "attempts": row.attempts,
                    "deadDateTime": isoformat(row.dead_ms / 1000),
                }
                for row in rows
            ]
        }
    )
