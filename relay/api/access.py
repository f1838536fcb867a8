"""Which job a request may see: the one named in its path, if the caller's token created it."""

from __future__ import annotations

import re

from aiohttp import web

from relay.api.middlewares import OWNER
from relay.api.problems import ProblemError
from relay.api.typedefs import STORE
from relay.core.schema import Job

__all__ = ["JOB_ID", "owned_job"]

JOB_ID = re.compile(r"^[0-9a-f]{32}$")


async def owned_job(request: web.Request) -> Job:
    """The job named by ``{job_id}``; 404 when it does not exist or belongs to another token (no difference shown)."""
    job_id = request.match_info["job_id"]
    job = await request.app[STORE].job(job_id, lenient=True) if JOB_ID.match(job_id) else None
    if job is None or job.owner != request[OWNER]:
        raise ProblemError(404, "Not Found", "no such job")
    return job
