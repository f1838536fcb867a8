"""What one poll means for the jobs sharing a monitor: pure, no I/O.

Given the classified monitor response, the monitor's stored state and the jobs' stored state,
:func:`plan_poll` decides the new monitor state, each job's change and events, the delay before
the next poll, and which jobs now need their DriveItem resolved.

It does so in three steps, which a monitor shared by more jobs than one Redis script should read takes
apart (``poll_in_chunks`` in ``workers/poll.py``): :func:`plan_answer` decides what the answer means before any
job is looked at (the monitor's fields and an :class:`Outcome`), :func:`plan_jobs` plans any number of its jobs
from that outcome, a chunk at a time, and :func:`next_delay` says when to poll again from what the jobs asked
for.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from relay.core.backoff import parse_retry_after, poll_delay
from relay.core.changes import completion_op, failure_op, job_event
from relay.core.graph_error import GraphError
from relay.core.monitor import Kind, PollResult, job_status
from relay.core.ops import JobOp
from relay.core.schema import EventType, Job, JobStatus, Monitor, Phase
from relay.core.stretches import Stretches, overdue_error, track

__all__ = [
    "RESOLVE_RECHECK",
    "JobsPlan",
    "Outcome",
    "PollPlan",
    "PollPolicy",
    "completed_from_monitor",
    "next_delay",
    "plan_answer",
    "plan_jobs",
    "plan_poll",
]

#: a completed monitor is looked at again after this long, to start again resolutions a crash or a lost arq task
#: left waiting; the first look after the write that starts them comes sooner, at the lease (:func:`next_delay`)
RESOLVE_RECHECK = 60.0


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """What planning a poll takes from the configuration: each field is the setting of the same name
    (:class:`relay.config.settings.Settings`), whose docs say what it means and whose bounds apply."""

    poll_initial_interval: float
    poll_max_interval: float
    job_timeout: float
    poll_max_error_time: float
    max_invalid_responses: int
    retry_after_cap: float
    lease: float  # how long a claim stays with its worker (derived from RELAY_REQUEST_TIMEOUT)

    @classmethod
    def of(cls, settings: object) -> PollPolicy:
        """The policy ``settings`` set: each field read by its name (core never imports the configuration)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


@dataclass(slots=True)
class PollPlan:
    monitor_change: Monitor  # the fields of the monitor's own state this poll changes
    ops: list[JobOp] = field(default_factory=list)
    delay: float = 0.0
    resolve: list[str] = field(default_factory=list)
    changed: bool = False
    warnings: tuple[tuple[str, dict[str, Any]], ...] = ()  # to log: see relay/core/stretches.py


def completed_from_monitor(monitor: Monitor) -> PollResult | None:
    """A monitor already seen completed is not polled again (it may be gone by now)."""
    if not monitor.completed:
        return None
    return PollResult(
        Kind.COMPLETED,
        status=monitor.status or "completed",
        percentage=100.0,
        operation=monitor.operation or None,
        resource_id=monitor.resource_id or None,
        drive_item=json.loads(monitor.drive_item) if monitor.drive_item else None,
    )


@dataclass(slots=True)
class Outcome:
    """What one answer means for every job of its monitor, decided before any job is looked at.

    A monitor whose jobs are planned a chunk at a time keeps it (``Monitor.outcome``, :meth:`to_json`) until
    every chunk is written, so that a poll cut short by a crash resumes with the answer it had."""

    result: PollResult
    now_ms: int
    invalid: int  # answers in a row that were not AsyncJobStatus, this one included
    operation: str | None
    stretches: Stretches
    delay: float = 0.0  # seconds until the next poll, before the jobs' progressInterval and the Retry-After
    retry_after: float | None = None  # the monitor's floor (seconds, capped), when it asked for one

    def to_json(self) -> str:
        data = asdict(self)
        data["stretches"] = [self.stretches.server_errors, self.stretches.unknown_status]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        data = json.loads(text)
        answer = data.pop("result")
        error = GraphError(**answer["error"]) if answer.get("error") else None
        result = PollResult(**{**answer, "kind": Kind(answer["kind"]), "error": error})
        server_errors, unknown_status = data.pop("stretches")
        return cls(result=result, stretches=Stretches(server_errors, unknown_status), **data)


@dataclass(slots=True)
class JobsPlan:
    """What an outcome means for some of the monitor's jobs, and what they ask of its next poll."""

    ops: list[JobOp] = field(default_factory=list)
    resolve: list[str] = field(default_factory=list)
    interval: float | None = None  # the smallest progressInterval among them
    wait_until: int | None = None  # the earliest end (ms) of a wait for authorization among them
    started: bool = False  # whether these changes set a job resolving (its resolution starts with their write)

    def merge(self, other: JobsPlan) -> None:
        """Take ``other``'s asks into this plan's (its ops and resolutions are handled on their own)."""
        if other.interval is not None:
            self.interval = other.interval if self.interval is None else min(self.interval, other.interval)
        if other.wait_until is not None:
            self.wait_until = other.wait_until if self.wait_until is None else min(self.wait_until, other.wait_until)
        self.started = self.started or other.started


def plan_poll(
    result: PollResult,
    monitor: Monitor,
    jobs: list[Job],
    now_ms: int,
    policy: PollPolicy,
    rng: random.Random,
    *,
    polled: bool = True,
) -> PollPlan:
    plan, outcome = plan_answer(result, monitor, now_ms, policy, rng, polled=polled, jobs=len(jobs))
    planned = plan_jobs(outcome, jobs, policy)
    plan.ops, plan.resolve = planned.ops, planned.resolve
    plan.delay = next_delay(outcome, planned, policy.lease)
    return plan


def plan_answer(
    result: PollResult,
    monitor: Monitor,
    now_ms: int,
    policy: PollPolicy,
    rng: random.Random,
    *,
    polled: bool = True,
    jobs: int = 0,
) -> tuple[PollPlan, Outcome]:
    """The monitor's side of a poll (its fields, warnings) and the outcome its jobs are planned from.
    ``jobs``: how many jobs share the monitor (for the warnings)."""
    plan = PollPlan(Monitor())
    pct = _monitor_fields(plan, result, monitor, now_ms, polled=polled)
    stretches = track(result, monitor, plan.monitor_change, now_ms, jobs)
    plan.warnings = stretches.warnings
    invalid = _invalid_after(result, monitor)
    operation = result.operation or monitor.operation or None
    outcome = Outcome(result, now_ms, invalid, operation, stretches)
    if result.kind is not Kind.COMPLETED:
        outcome.delay = _base_delay(plan, result, monitor, pct, now_ms, policy, rng)
        # Retry-After is the monitor's own floor, on any answer: a throttled 429/503, and also a running operation's
        # 200/202 (Graph's long-running-operation pattern answers "200 OK, Retry-After: 30" while running)
        retry_after = (  # an HTTP-date counts from relay's clock
            None if result.retry_after is None else parse_retry_after(result.retry_after, now_ms / 1000.0)
        )
        if retry_after is not None:
            outcome.retry_after = min(retry_after, policy.retry_after_cap)
            # kept, so that a job joining the monitor meanwhile is not polled before it either (register.lua)
            plan.monitor_change.not_before = now_ms + int(outcome.retry_after * 1000)
    return plan, outcome


def plan_jobs(outcome: Outcome, jobs: list[Job], policy: PollPolicy) -> JobsPlan:
    """Each job's change for the outcome (any number of the monitor's jobs: a chunk of them, or all)."""
    planned = JobsPlan()
    result, now_ms = outcome.result, outcome.now_ms
    intervals = [j.progress_interval for j in jobs if j.progress_interval]
    if intervals:
        planned.interval = min(intervals)
    for job in jobs:
        if job.phase is Phase.AUTHORIZING:
            wait_over = _authorization_wait_over(job, now_ms)
            if wait_over is None:
                until = job.auth_wait_until or now_ms
                planned.wait_until = until if planned.wait_until is None else min(planned.wait_until, until)
            else:
                planned.ops.append(wait_over)
            continue
        op = _plan_job(result, job, now_ms, policy, outcome.invalid, outcome.operation, outcome.stretches)
        if op is not None:
            planned.ops.append(op)
        starts = op is not None and op.set is not None and op.set.phase is Phase.RESOLVING
        if job.phase is Phase.RESOLVING or starts:
            planned.resolve.append(job.id)
        planned.started = planned.started or starts
    return planned


def next_delay(outcome: Outcome, jobs: JobsPlan, lease: float) -> float:
    """Seconds until the monitor is polled again, given what all its jobs asked for.

    A completed monitor is only looked at again for its jobs still resolving (its last job's end removes it).
    The write that sets jobs resolving brings it back after ``lease``, as a claim's lease would: the worker that
    wrote it resolves them at once (``resolve_soon``), within one request's time; one still resolving then was
    lost with that worker (killed before recording it), or waits for a retry. Later looks are a minute apart."""
    if outcome.result.kind is Kind.COMPLETED:
        waiting_until = [] if jobs.wait_until is None else [jobs.wait_until]
        recheck = min(lease, RESOLVE_RECHECK) if jobs.started else RESOLVE_RECHECK
        # a job waiting for authorization ends when its wait does, not at the next minute's recheck
        return max(0.0, min([recheck, *((until - outcome.now_ms) / 1000.0 for until in waiting_until)]))
    delay = outcome.delay
    # jobs that asked for live progress: the monitor is polled at the smallest of their intervals
    if jobs.interval is not None:
        delay = min(delay, jobs.interval)
    if outcome.retry_after is not None:
        delay = max(delay, outcome.retry_after)
    return delay


def _monitor_fields(plan: PollPlan, result: PollResult, monitor: Monitor, now_ms: int, *, polled: bool) -> float:
    """What the answer changes of the monitor's own state (into ``plan.monitor_change``: only the fields whose
    value changes, since the claim read them and the lease keeps other pollers off); its percentage now."""
    change = plan.monitor_change
    if polled:
        change.polls = monitor.polls + 1
        change.last_polled = now_ms
    pct = monitor.percentage
    if result.kind in (Kind.PROGRESS, Kind.COMPLETED, Kind.FAILED):
        pct = _status_fields(plan, result, monitor)
    elif result.kind is Kind.INVALID:
        change.invalid = monitor.invalid + 1
    elif result.kind is Kind.RETRY:
        change.errors = monitor.errors + 1
    if result.kind is Kind.COMPLETED:
        change.completed = True
        if result.resource_id:
            change.resource_id = result.resource_id
        if result.drive_item is not None:
            change.drive_item = json.dumps(result.drive_item)
    return pct


def _invalid_after(result: PollResult, monitor: Monitor) -> int:
    """Answers in a row that were not AsyncJobStatus, this one included (as :func:`_monitor_fields` stores it)."""
    if result.kind is Kind.INVALID:
        return monitor.invalid + 1
    if result.kind in (Kind.PROGRESS, Kind.COMPLETED, Kind.FAILED):
        return 0
    return monitor.invalid


def _status_fields(plan: PollPlan, result: PollResult, monitor: Monitor) -> float:
    """An answer with a status: the error counts end, and status, percentage (never lower), description and
    operation are what it says; whether it brought news (``plan.changed``); the percentage now."""
    prev_status = monitor.status or None
    pct = max(monitor.percentage, result.percentage if result.percentage is not None else monitor.percentage)
    desc = result.status_description or ""
    plan.changed = result.status != prev_status or pct != monitor.percentage or desc != monitor.status_description
    change = plan.monitor_change
    if monitor.invalid:
        change.invalid = 0
    if monitor.errors:
        change.errors = 0
    status = result.status or prev_status or JobStatus.IN_PROGRESS
    if status != monitor.status:
        change.status = status
    if pct != monitor.percentage:
        change.percentage = pct
    if desc != monitor.status_description:
        change.status_description = desc
    if result.operation and result.operation != monitor.operation:
        change.operation = result.operation
    return pct


def _base_delay(
    plan: PollPlan,
    result: PollResult,
    monitor: Monitor,
    pct: float,
    now_ms: int,
    policy: PollPolicy,
    rng: random.Random,
) -> float:
    """Seconds until a monitor still running is polled again, before its jobs' progressInterval and its
    Retry-After (:func:`next_delay`): backoff, or halfway to the predicted end."""
    streak = 0 if plan.changed else monitor.streak + 1
    plan.monitor_change.streak = streak
    delay = poll_delay(streak, policy.poll_initial_interval, policy.poll_max_interval, rng)
    if result.kind is Kind.PROGRESS:
        predicted = _predicted_delay(monitor, pct, plan.monitor_change, now_ms, policy, rng, changed=plan.changed)
        if predicted is not None:
            delay = predicted
    return delay


def _predicted_delay(
    monitor: Monitor,
    pct: float,
    change: Monitor,
    now_ms: int,
    policy: PollPolicy,
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
    if not monitor.base_ms or (monitor.base_percentage == 0.0 and pct > 0):
        change.base_ms, change.base_percentage = now_ms, pct
        return None
    elapsed = (now_ms - monitor.base_ms) / 1000.0
    gained = pct - monitor.base_percentage
    if not changed or gained <= 0 or elapsed <= 0:
        return None
    remaining = (100.0 - pct) * elapsed / gained
    delay = min(policy.poll_max_interval, max(policy.poll_initial_interval, remaining / 2.0))
    return delay * rng.uniform(0.9, 1.0)


def _authorization_wait_over(job: Job, now_ms: int) -> JobOp | None:
    """A job that waited for a fresh authorization in vain ends as the refused request left it."""
    if now_ms < job.auth_wait_until:
        return None
    error = json.loads(job.auth_error) if job.auth_error else {"code": "httpError", "httpStatus": 401}
    error = {**error, "message": f"{error.get('message') or 'refused'}; no usable authorization came in time"}
    return completion_op(job, now_ms, None, error, phase=Phase.AUTHORIZING)


def _plan_job(
    result: PollResult,
    job: Job,
    now_ms: int,
    policy: PollPolicy,
    invalid: int,
    operation: str | None,
    stretches: Stretches,
) -> JobOp | None:
    if job.terminal or job.phase is not Phase.TRACKING:
        return None
    if operation and job.operation != operation:
        job = job.merged(Job(operation=operation))
    if now_ms - job.created > policy.job_timeout * 1000 and result.kind is not Kind.COMPLETED:
        timeout = {"code": "timeout", "message": f"still not finished after {policy.job_timeout:g} s"}
        return _ended(failure_op(job, now_ms, timeout), result)

    overdue = overdue_error(result, stretches, now_ms, policy.poll_max_error_time)
    if overdue is not None:
        return _ended(failure_op(job, now_ms, overdue), result)

    if result.kind is Kind.PROGRESS:
        return _progress_op(result, job, now_ms, operation)

    if result.kind is Kind.COMPLETED:
        sets = Job(phase=Phase.RESOLVING, percentage=100.0)
        if operation:
            sets.operation = operation
        if result.resource_id:
            sets.resource_id = result.resource_id
        if result.drive_item is not None:
            sets.drive_item = json.dumps(result.drive_item)
        return _ended(JobOp.on(job, set=sets), result, default="completed")

    error = _failure(result, invalid, policy)
    return _ended(failure_op(job, now_ms, error), result) if error is not None else None


def _ended(op: JobOp, result: PollResult, default: str = "") -> JobOp:
    """An ending keeps what the monitor said last: its status word as it wrote it (``succeeded``, ``failed``...)
    and its description; an answer without a status word leaves the job's last one."""
    status = result.status or default
    if op.set is None:
        op.set = Job()
    if status:
        op.set.monitor_status = status
    if result.status_description:
        op.set.status_description = result.status_description
    return op


def _failure(result: PollResult, invalid: int, policy: PollPolicy) -> dict[str, Any] | None:
    """The ``job.failed`` error an answer means, if it means one."""
    extras = result.error.extras() if result.error is not None else {}
    if result.kind is Kind.FAILED:
        return {
            "code": "monitorFailed",
            "monitorStatus": result.status,
            "errorCode": result.error_code,
            "statusDescription": result.status_description,
            "message": result.error_message or result.status_description,
            "target": result.error_target,
            "httpStatus": result.http_status,
            **extras,
        }
    if result.kind is Kind.GONE:
        gone: dict[str, Any] = {"code": "monitorGone", "httpStatus": result.http_status}
        if result.error_code or result.error is not None:
            gone.update(errorCode=result.error_code, message=result.error_message, **extras)
        return gone
    if result.kind is Kind.INVALID and invalid >= policy.max_invalid_responses:
        detail = f"{invalid} answers in a row were not AsyncJobStatus; last: {result.detail}"
        invalid_error: dict[str, Any] = {"code": "invalidMonitorResponse", "message": detail}
        if result.http_status is not None:  # the last answer's status (a 401, a 200 of HTML...)
            invalid_error["httpStatus"] = result.http_status
        return invalid_error
    return None


def _progress_op(result: PollResult, job: Job, now_ms: int, operation: str | None) -> JobOp | None:
    """``job.progress`` when the status, the percentage (which never goes down) or the description changed."""
    status = job_status(result.kind, result.status)
    pct = max(job.percentage, result.percentage if result.percentage is not None else job.percentage)
    desc = result.status_description or ""
    unchanged = status == job.status and pct == job.percentage and desc == job.status_description
    if unchanged and job.sequence:  # a job's first answer is always news (even notStarted at 0%)
        return None
    extra = {"monitorStatus": result.status} if result.status else {}
    if desc:
        extra["statusDescription"] = desc
    event = job_event(EventType.PROGRESS, job, job.sequence + 1, now_ms, status, pct, **extra)
    sets = Job(status=status, percentage=pct, monitor_status=result.status or "")
    if desc or job.status_description:
        sets.status_description = desc
    if operation:
        sets.operation = operation
    return JobOp.on(job, set=sets, events=[event])
