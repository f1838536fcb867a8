"""The API's answers as the hot paths build them: plain dicts, without pydantic (the models they follow, the
OpenAPI document's, are in :mod:`relay.api.schemas`; the tests check every answer against them). Apart from the
models so that a ``relay serve`` at rest does not load pydantic (docs/performance.md, "Memory")."""

from __future__ import annotations

from typing import Any

from relay.core import jsonfast
from relay.core.events import isoformat
from relay.core.schema import DeliveryOutcome, Job, Phase
from relay.store.jobs import DeliveryInfo, PollInfo

__all__ = ["delivery_state", "job_view", "stored_job_view"]


def delivery_state(delivery: DeliveryInfo | None) -> dict[str, Any] | None:
    """:class:`relay.api.schemas.DeliveryState` of what the store read (None before the job's first event)."""
    if delivery is None:
        return None
    last = delivery.last or {}
    next_attempt = delivery.next_attempt
    return {
        "eventId": delivery.event_id,
        "type": delivery.type,
        "sequence": delivery.sequence,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "waiting": delivery.waiting,
        "nextAttemptDateTime": isoformat(next_attempt / 1000) if next_attempt is not None else None,
        "lastError": last.get("error") if last.get("outcome") != DeliveryOutcome.DELIVERED else None,
        "lastAttemptDateTime": last.get("time"),
    }


def job_view(job: Job, info: PollInfo, delivery: DeliveryInfo | None = None) -> dict[str, Any]:
    """:class:`relay.api.schemas.JobView` of a stored job (a dict, built without validation: the hot path)."""
    if job.polls:  # an ended job keeps what its monitor had when it left it
        info = PollInfo(job.polls, job.last_polled, info.due)
    waiting = job.phase is Phase.AUTHORIZING and job.auth_wait_until
    return {
        "id": job.id,
        "status": job.status.value,
        "operation": job.operation or None,
        "percentageComplete": job.percentage,
        "monitorStatus": job.monitor_status or None,
        "statusDescription": job.status_description or None,
        "resourceId": job.resource_id or None,
        "driveItem": _json(job.drive_item),
        "resolutionError": _json(job.resolution_error),
        "error": _json(job.error),
        "metadata": _json(job.metadata),
        "createdDateTime": isoformat(job.created / 1000),
        "lastPolledDateTime": isoformat(info.last_polled / 1000) if info.last_polled else None,
        "nextPollDateTime": isoformat(info.due / 1000) if info.due is not None and not job.terminal else None,
        "pollCount": info.polls,
        "callbackUrl": job.callback_url,
        "driveItemUrl": job.drive_item_url or None,
        "monitorHost": job.monitor_host or None,
        "sequence": job.sequence,
        "progressInterval": job.progress_interval or None,
        "phase": job.phase.api_name,
        "authorizationWaitUntil": isoformat(job.auth_wait_until / 1000) if waiting else None,
        "delivery": delivery_state(delivery),
    }


def _json(raw: str) -> Any:
    return jsonfast.loads(raw.encode()) if raw else None


#: the job's fields job_view parses as JSON
_JSON_FIELDS = Job.names_of(lambda j: (j.drive_item, j.resolution_error, j.error, j.metadata))


def stored_job_view(job: Job, info: PollInfo, delivery: DeliveryInfo | None = None) -> dict[str, Any]:
    """:func:`job_view` of a job read from Redis (leniently: :meth:`Job.from_hash_lenient`): a JSON field that does
    not parse shows null, and whatever did not read is named in ``unreadable``, where it would answer 500."""
    unreadable = [*job.unreadable, *info.unreadable, *(delivery.unreadable if delivery is not None else ())]
    try:
        view = job_view(job, info, delivery)
    except ValueError:  # orjson's JSONDecodeError: a JSON field damaged in Redis
        damaged = [name for name in _JSON_FIELDS if not _parses(job.fields.get(name, ""))]
        if not damaged:
            raise
        unreadable += damaged
        view = job_view(
            job.from_hash(job.id, {k: v for k, v in job.fields.items() if k not in damaged}), info, delivery
        )
    if unreadable:
        view["unreadable"] = unreadable
    return view


def _parses(raw: str) -> bool:
    try:
        _json(raw)
    except ValueError:
        return False
    return True
