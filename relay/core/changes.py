"""The changes a job goes through that end or mark it, and the events they record: pure, no I/O."""

from __future__ import annotations

import json
from typing import Any

from relay.core.events import build_event, new_event_id
from relay.core.ops import JobOp, NewEvent
from relay.core.schema import EventType, Job, JobStatus, Phase

__all__ = ["completion_event", "completion_op", "failure_op", "finished_op", "job_event"]


def job_event(
    event_type: EventType, job: Job, sequence: int, now_ms: int, status: str, pct: float, **extra: Any
) -> NewEvent:
    body = build_event(
        event_type,
        job_id=job.id,
        sequence=sequence,
        operation=job.operation or None,
        status=status,
        percentage=pct,
        metadata=job.metadata or None,
        timestamp=now_ms / 1000,
        **extra,
    )
    return {"id": new_event_id(), "type": event_type.value, "body": body}


def failure_op(job: Job, now_ms: int, error: dict[str, Any], *, phase: Phase | None = None) -> JobOp:
    """The terminal ``job.failed`` change for a job."""
    event = job_event(EventType.FAILED, job, job.sequence + 1, now_ms, JobStatus.FAILED, job.percentage, error=error)
    return JobOp.on(
        job,
        phase=phase,
        set=Job(status=JobStatus.FAILED, error=json.dumps(error)),
        events=[event],
        terminal=True,
    )


def completion_event(job: Job, now_ms: int, drive_item: Any, resolution_error: dict[str, Any] | None) -> NewEvent:
    extra: dict[str, Any] = {"resourceId": job.resource_id or None, "driveItem": drive_item}
    if resolution_error is not None:
        extra["resolutionError"] = resolution_error
    return job_event(EventType.COMPLETED, job, job.sequence + 1, now_ms, JobStatus.COMPLETED, 100.0, **extra)


def completion_op(
    job: Job, now_ms: int, drive_item: Any, resolution_error: dict[str, Any] | None, *, phase: Phase
) -> JobOp:
    """The terminal ``job.completed`` change of a job in ``phase`` (resolving, or waiting for authorization)."""
    sets = Job(status=JobStatus.COMPLETED, percentage=100.0)
    if drive_item is not None:
        sets.drive_item = json.dumps(drive_item)
    if resolution_error is not None:
        sets.resolution_error = json.dumps(resolution_error)
    event = completion_event(job, now_ms, drive_item, resolution_error)
    return JobOp.on(job, phase=phase, set=sets, events=[event], terminal=True)


def finished_op(job: Job, now_ms: int, drive_item: dict[str, Any]) -> JobOp:
    """The first change of a job whose action finished at once: completed, with the item Graph answered."""
    job = job.merged(Job(resource_id=drive_item["id"]))
    op = completion_op(job, now_ms, drive_item, None, phase=Phase.TRACKING)
    assert op.set is not None
    op.set.resource_id = drive_item["id"]
    return op
