"""The jobs resource: register, list, read (with long-poll), change and cancel."""

from __future__ import annotations

import asyncio
import json
from functools import partial

from aiohttp import web

from relay.api import params, sse
from relay.api.access import owned_job
from relay.api.http import json_object, json_response, render_job
from relay.api.middlewares import OWNER
from relay.api.problems import ProblemError
from relay.api.registration import destination_errors, register, vault
from relay.api.routing import AUTH, BODY, LIMIT, OWNED, ApiRoutes, Operation, json_answer, problem, query
from relay.api.streams import wait_for_change
from relay.api.typedefs import STORE
from relay.api.views import stored_job_view
from relay.core import jsonfast
from relay.core.schema import Job

__all__ = ["routes"]

routes = ApiRoutes()

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_CREATE = Operation(
    "createJob",
    description="Register a monitor URL, or give `action` and relay starts the action on Graph.",
    parameters=[_IDEMPOTENCY_KEY],
    body="JobCreate",
    responses={
        "201": json_answer("Job", "Created"),
        "200": json_answer("Job", "The job an earlier request with this Idempotency-Key created"),
        "409": problem("Idempotency-Key reused with another body, or still starting its action"),
        "502": problem("Graph failed the action, redirected it, or answered unusably"),
        "503": problem("Redis unreachable, a change not confirmed by replicas, or no credential token"),
        "504": problem("Graph did not answer the action in time"),
        "429": problem(
            "Over the token's RELAY_TENANT_MAX_ACTIVE_JOBS or RELAY_TENANT_REGISTRATIONS_PER_SECOND (Retry-After)"
        ),
        **AUTH,
        **BODY,
    },
)
_LIST = Operation(
    "listJobs",
    description="The caller's jobs, newest first. A page may hold fewer than `limit` jobs while `nextCursor` is "
    "not null.",
    parameters=[
        LIMIT,
        query("cursor", {"type": "string"}),
        {
            **query(
                "metadata",
                {
                    "type": "object",
                    "maxProperties": 8,
                    "propertyNames": {"minLength": 1, "maxLength": 256, "pattern": "^[^\\[\\]]+$"},
                    "additionalProperties": {"type": "string", "maxLength": 256},
                },
                "only jobs whose metadata has these top-level keys with these values (`?metadata[order]=A-1`; a "
                "number or boolean is compared as its JSON text)",
            ),
            "style": "deepObject",
            "explode": True,
        },
    ],
    responses={
        "200": json_answer("JobPage", "One page of jobs"),
        **AUTH,
        "422": problem("Bad limit, cursor or metadata filter"),
    },
)
_GET = Operation(
    "getJob",
    parameters=[
        query(
            "wait",
            {"type": "number", "minimum": 0, "maximum": 60},
            "long-poll: answer once the job's sequence differs from `sequence`, it has ended, or after this many "
            "seconds (it holds one of the token's RELAY_TENANT_MAX_STREAMS meanwhile)",
        ),
        query(
            "sequence",
            {"type": "integer", "minimum": 0},
            "with `wait`: the sequence the client has seen (default: the current one)",
        ),
    ],
    responses={
        "200": json_answer("Job", "The job"),
        "422": problem("Bad wait or sequence"),
        "429": problem("With `wait`: the token holds RELAY_TENANT_MAX_STREAMS streams open on this process"),
        **OWNED,
    },
)
_PATCH = Operation(
    "patchJob",
    body="JobPatch",
    responses={"200": json_answer("Job", "Updated"), "409": problem("The job has ended"), **OWNED, **BODY},
)
_DELETE = Operation("deleteJob", {"204": {"description": "No longer tracked"}, **OWNED})


# POST /v1/jobs: relay/api/registration.py's handler, routed here with its operation
create_job = routes.post("/v1/jobs", _CREATE)(register)


@routes.get("/v1/jobs", _LIST)
async def list_jobs(request: web.Request) -> web.Response:
    """The caller's jobs, newest first, ``?limit=`` at a time; ``?cursor=`` continues; ``?metadata[key]=value``
    keeps those whose metadata has it."""
    count, end, wanted = params.limit(request), params.cursor_end(request), params.metadata_filter(request)
    store = request.app[STORE]
    match = partial(_has_metadata, wanted) if wanted else None
    jobs, next_cursor = await store.owned_jobs(request[OWNER], count, end, match)
    infos = await asyncio.gather(*(store.job_info(job) for job in jobs))
    views = [stored_job_view(job, *info) for job, info in zip(jobs, infos, strict=True)]
    return json_response({"jobs": views, "nextCursor": next_cursor})


def _has_metadata(wanted: dict[str, str], job: Job) -> bool:
    if not job.metadata:
        return False
    try:
        metadata = jsonfast.loads(job.metadata.encode())
    except ValueError:  # damaged in Redis: matches no filter (the job's view names it unreadable)
        return False
    for key, value in wanted.items():
        have = metadata.get(key) if isinstance(metadata, dict) else None
        if have is None or (have if isinstance(have, str) else json.dumps(have)) != value:
            return False
    return True


@routes.get("/v1/jobs/{job_id}", _GET)
async def get_job(request: web.Request) -> web.Response:
    wait = params.wait(request)
    job = await owned_job(request)
    current: Job | None = job
    if wait is not None:
        with sse.slot(request, request[OWNER]):  # a long-poll holds one of the tenant's streams while it waits
            current = await wait_for_change(request, job, *wait)
    if current is None:
        raise ProblemError(404, "Not Found", "no such job")
    return json_response(await render_job(request, current))


@routes.patch("/v1/jobs/{job_id}", _PATCH)
async def patch_job(request: web.Request) -> web.Response:
    job = await owned_job(request)
    from relay.api.models import JobPatch  # pydantic: loaded by the first request that validates a body

    patch = JobPatch.model_validate(await json_object(request))
    fields = Job()
    if patch.callback_url is not None:
        destination_errors(request, callback_url=patch.callback_url)
        fields.callback_url = patch.callback_url
    if patch.authorization is not None:
        if not job.drive_item_url:
            raise ProblemError(422, "Invalid request body", "authorization is only used with a driveItemUrl")
        fields.authorization = vault(request).encrypt(patch.authorization)
    if patch.progress_interval is not None:
        fields.progress_interval = float(patch.progress_interval)
    store = request.app[STORE]
    if await store.patch(job.id, fields) == "ended":
        raise ProblemError(409, "Job has ended", "a finished job cannot be changed")
    updated = await store.job(job.id, lenient=True)
    assert updated is not None
    return json_response(await render_job(request, updated))


@routes.delete("/v1/jobs/{job_id}", _DELETE)
async def delete_job(request: web.Request) -> web.Response:
    job = await owned_job(request)
    await request.app[STORE].cancel(job.id)
    return web.Response(status=204)
