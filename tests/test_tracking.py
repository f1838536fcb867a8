"""What a poll means for the jobs sharing a monitor (pure planning, no Redis)."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from typing import Any

from relay.config.settings import Settings
from relay.core.monitor import Kind, PollResult
from relay.core.schema import Job, Monitor
from relay.core.stretches import Stretches
from relay.core.tracking import (
    RESOLVE_RECHECK,
    JobsPlan,
    Outcome,
    PollPolicy,
    completed_from_monitor,
    next_delay,
    plan_jobs,
    plan_poll,
)

S = PollPolicy.of(
    Settings(poll_initial_interval=1.0, poll_max_interval=60.0, job_timeout=100.0, max_invalid_responses=3)
)
NOW = 1_000_000
DEFAULTS = PollPolicy.of(Settings())


def job(**fields: Any) -> Job:
    base = {
        "id": "j1",
        "seq": "1",
        "status": "notStarted",
        "percentage": "0.0",
        "phase": "tracking",
        "created": str(NOW - 1000),
        "metadata": json.dumps({"m": 1}),
    }
    base.update({k: str(v) for k, v in fields.items()})
    return Job.from_hash(base.pop("id"), base)


def test_the_poll_policy_is_the_settings_of_the_same_names() -> None:
    given = {
        "RELAY_POLL_INITIAL_INTERVAL": ("poll_initial_interval", 2.0),
        "RELAY_POLL_MAX_INTERVAL": ("poll_max_interval", 30.0),
        "RELAY_JOB_TIMEOUT": ("job_timeout", 50.0),
        "RELAY_POLL_MAX_ERROR_TIME": ("poll_max_error_time", 70.0),
        "RELAY_POLL_MAX_INVALID": ("max_invalid_responses", 4),
    }
    policy = asdict(PollPolicy.of(Settings.from_env({variable: str(value) for variable, (_, value) in given.items()})))
    assert {name: policy[name] for name, _ in given.values()} == dict(given.values())
    assert policy["retry_after_cap"] == Settings().retry_after_cap
    assert policy["lease"] == Settings().lease


def progress(pct: float, status: str = "inProgress") -> PollResult:
    return PollResult(Kind.PROGRESS, http_status=202, status=status, percentage=pct, operation="ItemCopy")


def plan(result: PollResult, monitor: dict[str, str] | None = None, jobs: list[Job] | None = None) -> Any:
    state = Monitor.from_hash("m", monitor or {})
    return plan_poll(result, state, jobs if jobs is not None else [job()], NOW, S, random.Random(0))


def test_progress_change_emits_one_event_with_next_sequence() -> None:
    p = plan(progress(27.8), jobs=[job(seq=2, status="inProgress", percentage=10.0)])
    (op,) = p.ops
    assert op.prev_seq == 2 and len(op.events) == 1
    body = json.loads(op.events[0]["body"])
    assert body["type"] == "job.progress"
    assert body["data"] == {
        "jobId": "j1",
        "sequence": 3,
        "operation": "ItemCopy",
        "status": "inProgress",
        "percentageComplete": 27.8,
        "metadata": {"m": 1},
        "monitorStatus": "inProgress",
    }


def test_no_change_no_event_and_backoff_grows() -> None:
    monitor = {"status": "inProgress", "pct": "10.0", "streak": "3"}
    p = plan(progress(10.0), monitor, [job(status="inProgress", percentage=10.0)])
    assert p.ops == [] and not p.changed
    assert p.monitor_change.fields["streak"] == "4"
    assert 8.0 <= p.delay <= 16.0


def test_percentage_never_goes_down() -> None:
    p = plan(progress(5.0), {"status": "inProgress", "pct": "40.0"}, [job(status="inProgress", percentage=40.0)])
    assert p.ops == []
    assert p.monitor_change.fields.get("pct", "40.0") == "40.0"  # unchanged: not written again, and not lowered


def test_completion_marks_jobs_resolving_without_an_event() -> None:
    done = PollResult(Kind.COMPLETED, http_status=303, status="completed", percentage=100.0, resource_id="01R")
    p = plan(done)
    (op,) = p.ops
    assert op.events == [] and op.set.fields["phase"] == "resolving" and op.set.fields["resource_id"] == "01R"
    # the write that starts the resolution brings the monitor back at the lease, as a claim would: a worker
    # killed before recording the resolution costs that, not the minute's recheck
    assert p.resolve == ["j1"] and p.delay == S.lease < RESOLVE_RECHECK
    assert p.monitor_change.fields["completed"] == "1"


def test_a_completed_monitors_recheck_of_jobs_still_resolving_is_a_minute_later() -> None:
    done = PollResult(Kind.COMPLETED, status="completed", percentage=100.0, resource_id="01R")
    still = plan(done, {"completed": "1"}, [job(phase="resolving", status="completed", percentage=100.0)])
    assert still.ops == [] and still.resolve == ["j1"] and still.delay == RESOLVE_RECHECK
    joined = [job(phase="resolving", status="completed", percentage=100.0), job(id="j2")]
    assert plan(done, {"completed": "1"}, joined).delay == S.lease, "a job set resolving by this write"
    asks = JobsPlan()  # a monitor polled in chunks: any chunk's write that starts a resolution counts
    for chunk in ([joined[0]], [joined[1]], []):
        asks.merge(plan_jobs(Outcome(done, NOW, 0, None, Stretches()), chunk, S))
    assert asks.started and next_delay(Outcome(done, NOW, 0, None, Stretches()), asks, S.lease) == S.lease


def test_completed_monitor_is_not_polled_again() -> None:
    done = Monitor.from_hash("m", {"completed": "1", "resource_id": "01R", "drive_item": '{"id": "01R"}'})
    result = completed_from_monitor(done)
    assert result is not None and result.drive_item == {"id": "01R"}
    assert completed_from_monitor(Monitor.from_hash("m", {"status": "inProgress"})) is None


def test_failed_monitor_fails_every_job_terminally() -> None:
    failed = PollResult(Kind.FAILED, status="failed", error_code="AccessDenied_X", status_description="no")
    p = plan(failed, jobs=[job(), job(id="j2")])
    assert [op.terminal for op in p.ops] == [True, True]
    body = json.loads(p.ops[0].events[0]["body"])
    assert body["type"] == "job.failed"
    assert body["data"]["error"]["code"] == "monitorFailed"
    assert body["data"]["error"]["errorCode"] == "AccessDenied_X"


def test_invalid_answers_fail_only_after_the_limit() -> None:
    junk = PollResult(Kind.INVALID, http_status=200, detail="junk")
    assert plan(junk, {"invalid": "1"}).ops == []
    (op,) = plan(junk, {"invalid": "2"}).ops
    assert json.loads(op.events[0]["body"])["data"]["error"]["code"] == "invalidMonitorResponse"


def test_retry_after_is_honoured_but_capped() -> None:
    throttled = PollResult(Kind.RETRY, http_status=429, retry_after="120")
    assert plan(throttled).delay >= 120
    huge = PollResult(Kind.RETRY, http_status=503, retry_after="999999")
    assert plan(huge).delay == S.retry_after_cap
    assert plan(throttled).ops == []


def test_a_running_answer_s_retry_after_is_a_floor_too() -> None:
    """Graph's long-running-operation pattern: ``200 OK``, ``Retry-After: 30``, ``{"status": "running"}``."""
    running = PollResult(Kind.PROGRESS, http_status=200, status="inProgress", percentage=10.0, retry_after="30")
    assert plan(running).delay >= 30
    accepted = PollResult(Kind.PROGRESS, http_status=202, status="inProgress", percentage=10.0, retry_after="2")
    assert plan(accepted).delay >= 2
    # a floor, not a target: a monitor asking for less than the backoff is not polled sooner
    stalled = {"streak": "30", "status": "inProgress", "pct": "10.0"}
    quick = PollResult(Kind.PROGRESS, http_status=202, status="inProgress", percentage=10.0, retry_after="1")
    assert plan(quick, stalled).delay > 20
    # it beats a job's progressInterval: the monitor asked not to be polled sooner
    jobs = [job(id="a", progress_interval=2.0)]
    assert plan(running, {}, jobs).delay == 30.0


def test_timeout_fails_the_job() -> None:
    old = job(created=NOW - 200_000)
    (op,) = plan(progress(1.0), jobs=[old]).ops
    assert json.loads(op.events[0]["body"])["data"]["error"]["code"] == "timeout"


def test_jobs_already_resolving_are_resolved_again_not_replanned() -> None:
    p = plan(progress(50.0), jobs=[job(phase="resolving")])
    assert p.ops == [] and p.resolve == ["j1"]


def simulate(duration: float, policy: PollPolicy = DEFAULTS, seed: int = 0) -> tuple[int, float]:
    """Drive plan_poll against a steadily progressing copy: (polls until completion seen, lag in s)."""
    rng = random.Random(seed)
    monitor: dict[str, str] = {}
    t = 0.0
    polls = 0
    while True:
        polls += 1
        now = int(1_000_000 + t * 1000)
        if t >= duration:
            return polls, t - duration
        result = progress(100.0 * t / duration)
        p = plan_poll(result, Monitor.from_hash("m", monitor), [], now, policy, rng)
        monitor.update(p.monitor_change.fields)
        t += p.delay


def test_steady_progress_is_predicted_few_polls_little_lag() -> None:
    polls, lag = simulate(600)
    assert polls <= 25, polls  # a fixed 1 s poller needs 600
    assert lag <= 2.0, lag
    short_polls, short_lag = simulate(5)
    assert short_polls <= 6 and short_lag <= 1.5


def test_prediction_never_exceeds_the_backoff_cap() -> None:
    rng = random.Random(1)
    monitor = {"base_ms": str(NOW - 1000), "base_pct": "0.001", "pct": "0.001", "status": "inProgress"}
    p = plan_poll(progress(0.002), Monitor.from_hash("m", monitor), [], NOW, S, rng)
    assert p.delay <= S.poll_max_interval


def test_stalled_progress_falls_back_to_backoff() -> None:
    monitor = {"base_ms": str(NOW - 10_000), "base_pct": "10.0", "pct": "50.0", "status": "inProgress", "streak": "4"}
    p = plan_poll(progress(50.0), Monitor.from_hash("m", monitor), [], NOW, S, random.Random(0))
    assert not p.changed
    assert 16.0 <= p.delay <= 32.0  # streak 5: the plain backoff


def test_a_fresh_job_stores_no_defaults_and_is_tracked() -> None:
    fresh = Job.from_hash("j1", {"created": str(NOW - 1000)})  # as registered: seq, phase, status, pct absent
    (op,) = plan(progress(12.5), jobs=[fresh]).ops
    assert op.prev_seq == 0 and json.loads(op.events[0]["body"])["data"]["sequence"] == 1


def test_a_progress_interval_caps_the_delay_at_the_smallest_among_the_monitors_jobs() -> None:
    stalled = {"streak": "30", "status": "inProgress", "pct": "0.0"}  # plain backoff would wait the 60 s cap
    assert plan(progress(0.0), stalled).delay > 20
    jobs = [job(id="a", progress_interval=5.0), job(id="b", progress_interval=2.0), job(id="c")]
    assert plan(progress(0.0), stalled, jobs).delay == 2.0
    throttled = PollResult(Kind.RETRY, http_status=429, retry_after="30")
    assert plan(throttled, stalled, jobs).delay == 30.0, "Retry-After still wins"
    done = PollResult(Kind.COMPLETED, http_status=303, status="completed", percentage=100.0, resource_id="r")
    assert plan(done, {}, jobs).delay == S.lease, "a completed monitor is not polled for progress"


# -- statusDescription, failure reasons, bounded stretches (tests/corpus has the published answers) ------


def event_data(op: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(op.events[0]["body"])["data"]
    return data


def test_status_description_travels_in_progress_and_its_change_alone_is_news() -> None:
    folder = PollResult(Kind.PROGRESS, status="inProgress", percentage=0.0, status_description="Completed 1/9 files")
    (op,) = plan(folder, jobs=[job(status="inProgress")]).ops
    assert event_data(op)["statusDescription"] == "Completed 1/9 files"
    assert op.set.fields["status_description"] == "Completed 1/9 files"
    same = job(status="inProgress", status_description="Completed 1/9 files")
    assert plan(folder, {"status": "inProgress", "desc": "Completed 1/9 files"}, [same]).ops == []
    later = PollResult(Kind.PROGRESS, status="inProgress", percentage=0.0, status_description="Completed 2/9 files")
    p = plan(later, {"status": "inProgress", "desc": "Completed 1/9 files"}, [same])
    assert p.changed and event_data(p.ops[0])["statusDescription"] == "Completed 2/9 files"


def test_a_failure_keeps_every_reason_the_monitor_gave() -> None:
    failed = PollResult(
        Kind.FAILED,
        http_status=200,
        status="failed",
        error_code="nameAlreadyExists",
        error_message="exists",
        error_target="Copy of A",
    )
    (op,) = plan(failed).ops
    assert event_data(op)["error"] == {
        "code": "monitorFailed",
        "monitorStatus": "failed",
        "errorCode": "nameAlreadyExists",
        "statusDescription": None,
        "message": "exists",
        "target": "Copy of A",
        "httpStatus": 200,
    }


def test_gone_carries_the_graph_error_when_there_was_one() -> None:
    gone = PollResult(Kind.GONE, http_status=500, error_code="operationNotFound", error_message="no such operation")
    (op,) = plan(gone).ops
    error = event_data(op)["error"]
    assert error == {
        "code": "monitorGone",
        "httpStatus": 500,
        "errorCode": "operationNotFound",
        "message": "no such operation",
    }


BARE_500 = PollResult(Kind.RETRY, http_status=500, detail="HTTP 500")
NETWORK = PollResult(Kind.RETRY, detail="network: ClientConnectorError")
BOUND_MS = int(DEFAULTS.poll_max_error_time * 1000)


def plan_at(result: PollResult, monitor: dict[str, str], now: int) -> Any:
    return plan_poll(result, Monitor.from_hash("m", monitor), [job()], now, DEFAULTS, random.Random(0))


def test_bare_5xx_fail_the_job_naming_the_status_once_they_have_lasted_the_bound() -> None:
    first = plan_at(BARE_500, {}, NOW)
    assert first.ops == [] and first.monitor_change.fields["e5"] == str(NOW)
    assert [message for message, _ in first.warnings] and first.warnings[0][1]["http_status"] == 500
    monitor = {"e5": str(NOW)}
    later = plan_at(BARE_500, monitor, NOW + BOUND_MS - 1)
    assert later.ops == [] and later.warnings == ()  # one warning per stretch
    (op,) = plan_at(PollResult(Kind.RETRY, http_status=503), monitor, NOW + BOUND_MS).ops
    assert op.terminal and event_data(op)["error"]["code"] == "monitorHttp503"
    assert event_data(op)["error"]["httpStatus"] == 503


def test_a_valid_answer_ends_a_5xx_stretch_and_a_network_error_does_not() -> None:
    monitor = {"e5": str(NOW - BOUND_MS - 1)}
    assert plan_at(NETWORK, monitor, NOW).ops == [] and "e5" not in plan_at(NETWORK, monitor, NOW).monitor_change.fields
    (op,) = plan_at(BARE_500, monitor, NOW).ops  # the network error did not reset it
    assert event_data(op)["error"]["code"] == "monitorHttp500"
    assert plan_at(progress(5.0), monitor, NOW).monitor_change.fields["e5"] == "0"
    assert plan_at(PollResult(Kind.RETRY, http_status=429), monitor, NOW).monitor_change.fields["e5"] == "0"


def test_a_healthy_monitor_stores_no_stretch_fields() -> None:
    fields = plan_at(progress(5.0), {}, NOW).monitor_change.fields
    assert "e5" not in fields and "uk" not in fields


def test_an_unknown_status_word_is_passed_on_then_bounded_the_same_way() -> None:
    odd = PollResult(Kind.PROGRESS, http_status=200, status="unknownFutureValue", unknown_status=True)
    first = plan_at(odd, {}, NOW)
    (op,) = first.ops
    assert event_data(op)["monitorStatus"] == "unknownFutureValue" and not op.terminal
    assert first.warnings and first.warnings[0][1]["monitor_status"] == "unknownFutureValue"
    monitor = {"uk": str(NOW), "status": "unknownFutureValue"}
    (op,) = plan_at(odd, monitor, NOW + BOUND_MS).ops
    assert event_data(op)["error"] == {
        "code": "unknownMonitorStatus",
        "monitorStatus": "unknownFutureValue",
        "httpStatus": 200,
        "message": f"the monitor answered a status word relay does not know for {BOUND_MS / 1000:g} s",
    }
    assert plan_at(progress(5.0), monitor, NOW).monitor_change.fields["uk"] == "0"  # a known word ends the stretch
    assert "uk" not in plan_at(BARE_500, monitor, NOW).monitor_change.fields  # an error does not
