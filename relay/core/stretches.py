"""Runs of monitor answers that would otherwise keep a job polling for days: pure, no I/O.

Two kinds, each bounded by ``RELAY_POLL_MAX_ERROR_TIME`` and each announced by one warning when it
starts (never with the monitor URL):

- **bare 5xx**: server errors without a status body. A network error neither extends nor ends the
  run (the fault may be on this side); any other answer ends it. When the run has lasted the bound,
  the jobs fail with ``monitorHttp<status>`` (the last status seen).
- **unknown status words**: answers whose ``status`` relay cannot map (see relay/core/monitor.py). They
  are passed on as ``monitorStatus``; an answer with a known status ends the run, errors and junk
  leave it as it is. When it has lasted the bound, the jobs fail with ``unknownMonitorStatus``.

The start of each run is kept in the monitor's hash (fields ``e5`` and ``uk``, ms since the epoch;
written when a run starts or ends, so a healthy monitor stores nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.core.monitor import Kind, PollResult
from relay.core.schema import Monitor

__all__ = ["Stretches", "overdue_error", "track"]

_WORD_SHOWN = 64  # an unknown status word comes from the monitor: log at most this much of it


@dataclass(slots=True)  # not frozen: CONTRIBUTING.md (made on every operation)
class Stretches:
    """Start (ms) of the monitor's current run of bare 5xx and of unknown status words (0: none)."""

    server_errors: int = 0
    unknown_status: int = 0
    warnings: tuple[tuple[str, dict[str, Any]], ...] = ()


def _run(since: int, now_ms: int, *, on: bool, off: bool) -> int:
    if on and not since:
        return now_ms
    if off and since:
        return 0
    return since


def track(result: PollResult, monitor: Monitor, change: Monitor, now_ms: int, jobs: int) -> Stretches:
    """Extend, end or start the monitor's runs for this answer; ``change`` (the poll's) gets what changed."""
    if not (monitor.server_errors_since or monitor.unknown_status_since or result.kind is Kind.RETRY) and (
        not result.unknown_status
    ):  # the usual answer: no run going on, none starting
        return Stretches()
    bare_5xx = result.kind is Kind.RETRY and (result.http_status or 0) >= 500
    network = result.kind is Kind.RETRY and result.http_status is None
    server = _run(monitor.server_errors_since, now_ms, on=bare_5xx, off=not (bare_5xx or network))
    if server != monitor.server_errors_since:
        change.server_errors_since = server
    unknown = result.kind is Kind.PROGRESS and result.unknown_status
    known = result.kind in (Kind.PROGRESS, Kind.COMPLETED, Kind.FAILED) and not result.unknown_status
    odd = _run(monitor.unknown_status_since, now_ms, on=unknown, off=known)
    if odd != monitor.unknown_status_since:
        change.unknown_status_since = odd
    warnings: list[tuple[str, dict[str, Any]]] = []
    if bare_5xx and server == now_ms:
        warnings.append(
            (
                "monitor answers HTTP 5xx without a status; its jobs fail if this lasts RELAY_POLL_MAX_ERROR_TIME",
                {"http_status": result.http_status, "jobs": jobs},
            )
        )
    if unknown and odd == now_ms:
        warnings.append(
            (
                "monitor status word not known: passed on as monitorStatus; its jobs fail if this lasts "
                "RELAY_POLL_MAX_ERROR_TIME",
                {"monitor_status": (result.status or "")[:_WORD_SHOWN], "jobs": jobs},
            )
        )
    return Stretches(server, odd, tuple(warnings))


def overdue_error(result: PollResult, stretches: Stretches, now_ms: int, bound_s: float) -> dict[str, Any] | None:
    """The ``job.failed`` error once this answer's run has lasted ``bound_s``, else None."""
    if result.kind is Kind.RETRY and (result.http_status or 0) >= 500 and stretches.server_errors:
        lasted = (now_ms - stretches.server_errors) / 1000
        if lasted >= bound_s:
            return {
                "code": f"monitorHttp{result.http_status}",
                "httpStatus": result.http_status,
                "message": f"the monitor answered HTTP 5xx without a status for {lasted:g} s",
            }
    if result.kind is Kind.PROGRESS and result.unknown_status and stretches.unknown_status:
        lasted = (now_ms - stretches.unknown_status) / 1000
        if lasted >= bound_s:
            return {
                "code": "unknownMonitorStatus",
                "monitorStatus": result.status,
                "httpStatus": result.http_status,
                "message": f"the monitor answered a status word relay does not know for {lasted:g} s",
            }
    return None
