"""What one poll means for the jobs sharing a monitor: pure, no I/O.

Given the classified monitor response, the monitor's stored state and the jobs' stored state,
:func:`plan_poll` decides the new monitor state, each job's change and events, the delay before
the next poll, and which jobs now need their DriveItem resolved.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from relay.core.backoff import parse_retry_after, poll_delay
from relay.core.events import COMPLETED, FAILED, PROGRESS, build_event, new_event_id
from relay.core.monitor import Kind, PollResult, job_status
from relay.core.ops import JobOp
from relay.core.stretches import Stretches, overdue_error, track
from relay.settings import Settings

__all__ = [
    "AWAITING_AUTHORIZATION",
    "RESOLVE_RECHECK",
    "PollPlan",
    "completed_from_monitor",
    "completion_event",
    "completion_op",
    "failure_op",
    "finished_op",
    "job_event",
    "plan_poll",
]

#: a completed monitor is looked at again after this long, to re-enqueue resolutions a crash lost
RESOLVE_RECHECK = 60.0
#: the job phase of a job whose DriveItem request was refused, while it waits for a PATCHed authorization
AWAITING_AUTHORIZATION = "authorizing"


@dataclass(slots=True)
class PollPlan:
    monitor_fields: dict[str, str]
    ops: list[JobOp] = field(default_factory=list)
    delay: float = 0.0
    resolve: list[str] = field(default_factory=list)
    changed: bool = False
    warnings: tuple[tuple[str, dict[str, Any]], ...] = ()  # to log: see relay/stretches.py


def completed_from_monitor(monitor: dict[str, str]) -> PollResult | None:
    """A monitor already seen completed is not polled again (it may be gone by now)."""
    if monitor.get("completed") != "1":
        return None
    item = monitor.get("drive_item")
    return PollResult(
        Kind.COMPLETED,
        status="completed",
        percentage=100.0,
        operation=monitor.get("operation") or None,
        resource_id=monitor.get("resource_id") or None,
        drive_item=json.loads(item) if item else None,
    )


def job_event(
    kind: str, job: dict[str, str], seq: int, now_ms: int, status: str, pct: float, **extra: Any
) -> dict[str, str]:
    event_id = new_event_id()
    body = build_event(
        kind,
        job_id=job["id"],
        sequence=seq,
        operation=job.get("operation") or None,
        status=status,
        percentage=pct,
        metadata=json.loads(job["metadata"]) if job.get("metadata") else None,
        timestamp=now_ms / 1000,
        **extra,
    )
    return {"id": event_id, "type": kind, "body": body}


def failure_op(job: dict[str, str], now_ms: int, error: dict[str, Any], *, phase: str | None = None) -> JobOp:
    """The terminal ``job.failed`` change for a job."""
    seq = int(job.get("seq") or 0)
    pct = float(job.get("percentage") or 0)
    event = job_event(FAILED, job, seq + 1, now_ms, "failed", pct, error=error)
    return JobOp(
        job=job["id"],
        prev_seq=seq,
        phase=phase,
        set={"status": "failed", "error": json.dumps(error)},
        events=[event],
        terminal=True,
    )


def completion_event(
    job: dict[str, str], now_ms: int, drive_item: Any, resolution_error: dict[str, Any] | None
) -> dict[str, str]:
    extra: dict[str, Any] = {"resourceId": job.get("resource_id") or None, "driveItem": drive_item}
    if resolution_error is not None:
        extra["resolutionError"] = resolution_error
    return job_event(COMPLETED, job, int(job.get("seq") or 0) + 1, now_ms, "completed", 100.0, **extra)


def completion_op(
    job: dict[str, str], now_ms: int, drive_item: Any, resolution_error: dict[str, Any] | None, *, phase: str
) -> JobOp:
    """The terminal ``job.completed`` change of a job in ``phase`` (resolving, or waiting for authorization)."""
    sets = {"status": "completed", "percentage": "100.0"}
    if drive_item is not None:
        sets["drive_item"] = json.dumps(drive_item)
    if resolution_error is not None:
        sets["resolution_error"] = json.dumps(resolution_error)
    event = completion_event(job, now_ms, drive_item, resolution_error)
    return JobOp(job=job["id"], prev_seq=int(job.get("seq") or 0), phase=phase, set=sets, events=[event], terminal=True)


def plan_poll(
    result: PollResult,
    monitor: dict[str, str],
    jobs: list[dict[str, str]],
    now_ms: int,
    settings: Settings,
    rng: random.Random,
    *,
    polled: bool = True,
) -> PollPlan:
    fields: dict[str, str] = {}
    if polled:
        fields["polls"] = str(int(monitor.get("polls") or 0) + 1)
        fields["last_polled"] = str(now_ms)
    streak = int(monitor.get("streak") or 0)
    invalid = int(monitor.get("invalid") or 0)
    plan = PollPlan(fields)

    if result.kind in (Kind.PROGRESS, Kind.COMPLETED, Kind.FAILED):
        fields["invalid"] = "0"
        fields["errors"] = "0"
        prev_status, prev_pct = monitor.get("status"), float(monitor.get("pct") or 0)
        pct = max(prev_pct, result.percentage if result.percentage is not None else prev_pct)
        desc = result.status_description or ""
        plan.changed = result.status != prev_status or pct != prev_pct or desc != monitor.get("desc", "")
        fields["status"] = result.status or prev_status or "inProgress"
        fields["pct"] = repr(pct)
        if desc or monitor.get("desc"):
            fields["desc"] = desc
        if result.operation:
            fields["operation"] = result.operation
    elif result.kind is Kind.INVALID:
        invalid += 1
        fields["invalid"] = str(invalid)
    elif result.kind is Kind.RETRY:
        fields["errors"] = str(int(monitor.get("errors") or 0) + 1)
    if result.kind is Kind.COMPLETED:
        fields["completed"] = "1"
        if result.resource_id:
            fields["resource_id"] = result.resource_id
        if result.drive_item is not None:
            fields["drive_item"] = json.dumps(result.drive_item)

    stretches = track(result, monitor, fields, now_ms, len(jobs))
    plan.warnings = stretches.warnings
    operation = result.operation or monitor.get("operation") or None
    waiting_until: list[int] = []
    for job in jobs:
        if job.get("phase") == AWAITING_AUTHORIZATION:
            wait_over = _authorization_wait_over(job, now_ms)
            if wait_over is None:
                waiting_until.append(int(job.get("auth_wait_until") or now_ms))
            else:
                plan.ops.append(wait_over)
            continue
        op = _plan_job(result, job, now_ms, settings, invalid, operation, stretches)
        if op is not None:
            plan.ops.append(op)
        if job.get("phase") == "resolving" or (op is not None and op.set.get("phase") == "resolving"):
            plan.resolve.append(job["id"])

    if result.kind is Kind.COMPLETED:
        # a job waiting for authorization ends when its wait does, not at the next minute's recheck
        plan.delay = min([RESOLVE_RECHECK, *((until - now_ms) / 1000.0 for until in waiting_until)])
        plan.delay = max(plan.delay, 0.0)
    else:
        streak = 0 if plan.changed else streak + 1
        fields["streak"] = str(streak)
        plan.delay = poll_delay(streak, settings.poll_initial_interval, settings.poll_max_interval, rng)
        if result.kind is Kind.PROGRESS:
            predicted = _predicted_delay(monitor, fields, now_ms, settings, rng, changed=plan.changed)
            if predicted is not None:
                plan.delay = predicted
        # jobs that asked for live progress: the monitor is polled at the smallest of their intervals
        intervals = [float(j["progress_interval"]) for j in jobs if j.get("progress_interval")]
        if intervals:
            plan.delay = min(plan.delay, min(intervals))
        retry_after = parse_retry_after(result.retry_after) if result.http_status in (429, 503) else None
        if retry_after is not None:
            plan.delay = max(plan.delay, min(retry_after, settings.retry_after_cap))
    return plan


def _predicted_delay(
    monitor: dict[str, str],
    fields: dict[str, str],
    now_ms: int,
    settings: Settings,
    rng: random.Random,
    *,
    changed: bool,
) -> float | None:
    """Poll again halfway to the completion the progress rate predicts; None when there is no rate.

    The rate is measured from a baseline: the first poll that saw a non-zero percentage (a job that
    sat at 0 or ``notStarted`` for hours does not slow the estimate down). Halving the predicted time
    left costs a handful of polls for a long copy and lands the last ones close to the finish; the
    result stays within [initial interval, backoff cap], with 10% jitter so jobs do not poll in step.
    Only a poll that saw progress predicts: a stalled job falls back to the plain backoff.
    """
    pct = float(fields.get("pct") or 0)
    base_ms, base_pct = monitor.get("base_ms"), monitor.get("base_pct")
    if base_ms is None or base_pct is None or (float(base_pct) == 0.0 and pct > 0):
        fields["base_ms"], fields["base_pct"] = str(now_ms), repr(pct)
        return None
    elapsed = (now_ms - int(base_ms)) / 1000.0
    gained = pct - float(base_pct)
    if not changed or gained <= 0 or elapsed <= 0:
        return None
    remaining = (100.0 - pct) * elapsed / gained
    delay = min(settings.poll_max_interval, max(settings.poll_initial_interval, remaining / 2.0))
    return delay * rng.uniform(0.9, 1.0)


def finished_op(job: dict[str, str], now_ms: int, drive_item: dict[str, Any]) -> JobOp:
    """The first change of a job whose action finished at once: completed, with the item Graph answered."""
    job = {**job, "resource_id": drive_item["id"]}
    op = completion_op(job, now_ms, drive_item, None, phase="tracking")
    op.set["resource_id"] = drive_item["id"]
    return op


def _authorization_wait_over(job: dict[str, str], now_ms: int) -> JobOp | None:
    """A job that waited for a fresh authorization in vain ends as the refused request left it."""
    if now_ms < int(job.get("auth_wait_until") or 0):
        return None
    error = json.loads(job["auth_error"]) if job.get("auth_error") else {"code": "httpError", "httpStatus": 401}
    error = {**error, "message": f"{error.get('message') or 'refused'}; no usable authorization came in time"}
    return completion_op(job, now_ms, None, error, phase=AWAITING_AUTHORIZATION)


def _plan_job(
    result: PollResult,
    job: dict[str, str],
    now_ms: int,
    settings: Settings,
    invalid: int,
    operation: str | None,
    stretches: Stretches,
) -> JobOp | None:
    if job.get("terminal") == "1" or job.get("phase", "tracking") != "tracking":
        return None
    seq = int(job.get("seq") or 0)
    if operation and job.get("operation") != operation:
        job = {**job, "operation": operation}
    if now_ms - int(job["created"]) > settings.job_timeout * 1000 and result.kind is not Kind.COMPLETED:
        return failure_op(
            job, now_ms, {"code": "timeout", "message": f"still not finished after {settings.job_timeout:g} s"}
        )

    overdue = overdue_error(result, stretches, now_ms, settings.poll_max_error_time)
    if overdue is not None:
        return failure_op(job, now_ms, overdue)

    if result.kind is Kind.PROGRESS:
        status = job_status(result.kind, result.status)
        old_pct = float(job.get("percentage") or 0)
        pct = max(old_pct, result.percentage if result.percentage is not None else old_pct)
        desc, old_desc = result.status_description or "", job.get("status_description", "")
        if status == job.get("status") and pct == old_pct and desc == old_desc:
            return None
        extra = {"monitorStatus": result.status} if result.status else {}
        if desc:
            extra["statusDescription"] = desc
        event = job_event(PROGRESS, job, seq + 1, now_ms, status, pct, **extra)
        sets = {"status": status, "percentage": repr(pct), "monitor_status": result.status or ""}
        if desc or old_desc:
            sets["status_description"] = desc
        if operation:
            sets["operation"] = operation
        return JobOp(job=job["id"], prev_seq=seq, set=sets, events=[event])

    if result.kind is Kind.COMPLETED:
        sets = {"phase": "resolving", "percentage": "100.0", "monitor_status": "completed"}
        if operation:
            sets["operation"] = operation
        if result.resource_id:
            sets["resource_id"] = result.resource_id
        if result.drive_item is not None:
            sets["drive_item"] = json.dumps(result.drive_item)
        return JobOp(job=job["id"], prev_seq=seq, set=sets)

    if result.kind is Kind.FAILED:
        error = {
            "code": "monitorFailed",
            "monitorStatus": result.status,
            "errorCode": result.error_code,
            "statusDescription": result.status_description,
            "message": result.error_message or result.status_description,
            "target": result.error_target,
            "httpStatus": result.http_status,
        }
        return failure_op(job, now_ms, error)

    if result.kind is Kind.GONE:
        gone: dict[str, Any] = {"code": "monitorGone", "httpStatus": result.http_status}
        if result.error_code:
            gone.update(errorCode=result.error_code, message=result.error_message)
        return failure_op(job, now_ms, gone)

    if result.kind is Kind.INVALID and invalid >= settings.max_invalid_responses:
        detail = f"{invalid} answers in a row were not AsyncJobStatus; last: {result.detail}"
        return failure_op(job, now_ms, {"code": "invalidMonitorResponse", "message": detail})
    return None
