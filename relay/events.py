"""Build webhook event bodies: pure, no I/O."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "COMPLETED",
    "FAILED",
    "PROGRESS",
    "TERMINAL_TYPES",
    "build_event",
    "isoformat",
    "new_event_id",
]

PROGRESS = "job.progress"
COMPLETED = "job.completed"
FAILED = "job.failed"
TERMINAL_TYPES = frozenset({COMPLETED, FAILED})


def new_event_id() -> str:
    return f"msg_{secrets.token_hex(16)}"


def isoformat(when: datetime | float) -> str:
    """ISO-8601 UTC with millisecond precision and a ``Z``, as Graph writes its dates."""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_event(
    event_type: str,
    *,
    job_id: str,
    sequence: int,
    operation: str | None,
    status: str,
    percentage: float,
    metadata: Any,
    timestamp: float,
    **extra: Any,
) -> str:
    """The JSON body of one event, serialised once so every attempt sends the same bytes."""
    data: dict[str, Any] = {
        "jobId": job_id,
        "sequence": sequence,
        "operation": operation,
        "status": status,
        "percentageComplete": percentage,
        "metadata": metadata,
    }
    data.update(extra)
    body = {"type": event_type, "timestamp": isoformat(timestamp), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
