"""Resolve the new DriveItem of a completed job (an arq task) and record ``job.completed``.

Durability: the poller marks the job ``resolving`` before it enqueues this task, and a completed
monitor is looked at again every minute, re-enqueuing resolutions a crash may have lost; arq's
``_job_id`` keeps the task single.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from arq import Retry
from arq.connections import ArqRedis

from relay import keys, metrics
from relay.client import fetch
from relay.crypto import InvalidToken
from relay.monitor import MAX_BODY
from relay.ssrf import Blocked
from relay.store import JobOp
from relay.tracking import completion_event
from workers.context import Deps

__all__ = ["RESOLVE_TASK", "enqueue_resolution", "resolve_item"]

log = structlog.stdlib.get_logger("relay.resolve")

RESOLVE_TASK = "resolve_item"
MAX_TRIES = 4


async def enqueue_resolution(pool: ArqRedis, job_id: str) -> None:
    await pool.enqueue_job(RESOLVE_TASK, job_id, _job_id=f"resolve:{job_id}", _queue_name=keys.ARQ_QUEUE)


def item_url(template: str, resource_id: str) -> str:
    """Fill ``{resourceId}``; quoting keeps the id from changing the URL's host or path."""
    return template.replace("{resourceId}", quote(resource_id, safe=""))


async def fetch_item(deps: Deps, job: dict[str, str], job_try: int) -> tuple[Any, dict[str, Any] | None]:
    """(driveItem, None) or (None, resolutionError); raises ``Retry`` for transient failures."""
    if job.get("drive_item"):
        return json.loads(job["drive_item"]), None
    resource_id = job.get("resource_id")
    template = job.get("drive_item_url")
    if not template:
        return None, {"code": "noDriveItemUrl", "message": "no driveItemUrl was registered"}
    if not resource_id:
        return None, {"code": "noResourceId", "message": "the monitor reported no resourceId"}
    headers = {"Accept": "application/json"}
    if job.get("authorization"):
        try:
            headers["Authorization"] = deps.vault.decrypt(job["authorization"])
        except InvalidToken:
            return None, {
                "code": "authorizationUnreadable",
                "message": "the stored authorization was encrypted with another key",
            }
    try:
        resp = await fetch(
            deps.session,
            "GET",
            item_url(template, resource_id),
            trusted_hosts=deps.trusted_hosts,
            time_limit=deps.settings.request_timeout,
            max_body=MAX_BODY,
            headers=headers,
        )
    except Blocked as exc:
        return None, {"code": "blocked", "message": str(exc)}
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        if job_try < MAX_TRIES:
            raise Retry(defer=2**job_try) from None
        return None, {"code": "networkError", "message": type(exc).__name__}
    if resp.too_large:
        return None, {"code": "tooLarge", "httpStatus": resp.status, "message": "the DriveItem response is over 1 MiB"}
    if resp.status == 200:
        try:
            item = json.loads(resp.body)
        except ValueError:
            item = None
        if isinstance(item, dict):
            return item, None
        return None, {"code": "invalidResponse", "httpStatus": 200, "message": "the DriveItem is not a JSON object"}
    if (resp.status in (429, 503) or resp.status >= 500) and job_try < MAX_TRIES:
        raise Retry(defer=2**job_try)
    return None, {"code": "httpError", "httpStatus": resp.status, "message": f"GET driveItemUrl answered {resp.status}"}


async def resolve_item(ctx: dict[str, Any], job_id: str) -> str:
    deps: Deps = ctx["deps"]
    structlog.contextvars.bind_contextvars(job_id=job_id)
    job = await deps.store.job(job_id)
    if not job or job.get("phase") != "resolving" or job.get("terminal") == "1":
        return "skipped"
    item, error = await fetch_item(deps, job, int(ctx.get("job_try", 1)))
    now_ms = int(time.time() * 1000)
    event = completion_event(job, now_ms, item, error)
    sets = {"status": "completed", "percentage": "100.0"}
    if item is not None:
        sets["drive_item"] = json.dumps(item)
    if error is not None:
        sets["resolution_error"] = json.dumps(error)
    op = JobOp(
        job=job_id, prev_seq=int(job.get("seq") or 0), phase="resolving", set=sets, events=[event], terminal=True
    )
    outcome = await deps.store.apply_job(op)
    metrics.RESOLUTIONS.labels(outcome="resolved" if error is None else error["code"]).inc()
    if outcome == "ok":
        metrics.EVENTS.labels(type=event["type"]).inc()
        log.info("event recorded", event_id=event["id"], type=event["type"], resolution_error=error and error["code"])
    return outcome
