"""Classify one monitor response: pure, no I/O.

Real monitors are inconsistent (see SPEC "The problem"), so the JSON body decides first and the
HTTP status second: a 500 carrying a valid AsyncJobStatus is that status; a 200 carrying a
DriveItem is a completion that brings its item; a 303 is a completion even with an empty body.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "FAILED_STATUSES",
    "MAX_BODY",
    "Kind",
    "PollResult",
    "classify",
    "job_status",
]

#: larger monitor (and DriveItem) responses count as errors
MAX_BODY = 1024 * 1024
FAILED_STATUSES = frozenset({"failed", "deleteFailed", "cancelled"})
_NOT_STARTED = frozenset({"notStarted", "waiting"})
_DRIVE_ITEM_FIELDS = ("name", "file", "folder", "parentReference", "size", "webUrl", "eTag")
_ITEM_IN_PATH = re.compile(r"/items/([^/?#]+)")


class Kind(StrEnum):
    PROGRESS = "progress"  # still running: status and/or percentage
    COMPLETED = "completed"
    FAILED = "failed"  # the monitor says failed / deleteFailed / cancelled
    GONE = "gone"  # 404 / 410: the monitor no longer exists
    RETRY = "retry"  # transient: 429, 5xx, network; back off, never fail the job for it
    INVALID = "invalid"  # an answer that is not AsyncJobStatus


@dataclass(frozen=True, slots=True)
class PollResult:
    kind: Kind
    http_status: int | None = None
    status: str | None = None
    percentage: float | None = None
    operation: str | None = None
    resource_id: str | None = None
    error_code: str | None = None
    status_description: str | None = None
    drive_item: dict[str, Any] | None = None
    location: str | None = None
    retry_after: str | None = None
    detail: str = ""


def job_status(kind: Kind, monitor_status: str | None) -> str:
    """The job status (SPEC: notStarted|inProgress|completed|failed|cancelled) a poll result implies."""
    if kind is Kind.COMPLETED:
        return "completed"
    if kind is Kind.FAILED:
        return "failed"
    if monitor_status in _NOT_STARTED:
        return "notStarted"
    return "inProgress"


def _percentage(value: Any) -> float | bool | None:
    """A usable percentage, ``None`` when absent, ``False`` when present but malformed."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    number = float(value)
    if not math.isfinite(number):
        return False
    return min(100.0, max(0.0, number))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _looks_like_drive_item(doc: Mapping[str, Any]) -> bool:
    return isinstance(doc.get("id"), str) and "status" not in doc and any(f in doc for f in _DRIVE_ITEM_FIELDS)


def _resource_from_location(location: str | None) -> str | None:
    if not location:
        return None
    match = _ITEM_IN_PATH.search(location)
    return match.group(1) if match else None


def classify(
    http_status: int,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    too_large: bool = False,
) -> PollResult:
    location = headers.get("Location") or headers.get("location")
    retry_after = headers.get("Retry-After") or headers.get("retry-after")
    base: dict[str, Any] = {"http_status": http_status, "location": location, "retry_after": retry_after}

    if too_large:
        return PollResult(Kind.INVALID, detail="response body over 1 MiB", **base)

    doc: Any = None
    if body:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            doc = None

    if isinstance(doc, dict) and isinstance(doc.get("status"), str) and doc["status"]:
        pct = _percentage(doc.get("percentageComplete"))
        if pct is False:
            return PollResult(Kind.INVALID, detail="percentageComplete is not a number", **base)
        status = doc["status"]
        fields: dict[str, Any] = {
            "status": status,
            "percentage": pct,
            "operation": _str_or_none(doc.get("operation")),
            "resource_id": _str_or_none(doc.get("resourceId")),
            "error_code": _str_or_none(doc.get("errorCode")),
            "status_description": _str_or_none(doc.get("statusDescription")),
        }
        if status == "completed":
            if fields["resource_id"] is None:
                fields["resource_id"] = _resource_from_location(location)
            fields["percentage"] = 100.0
            return PollResult(Kind.COMPLETED, **fields, **base)
        if status in FAILED_STATUSES:
            return PollResult(Kind.FAILED, **fields, **base)
        return PollResult(Kind.PROGRESS, **fields, **base)

    if isinstance(doc, dict) and _looks_like_drive_item(doc) and http_status in (200, 201, 303):
        return PollResult(
            Kind.COMPLETED, status="completed", percentage=100.0, resource_id=doc["id"], drive_item=doc, **base
        )

    if http_status == 303:
        return PollResult(
            Kind.COMPLETED,
            status="completed",
            percentage=100.0,
            resource_id=_resource_from_location(location),
            detail="303 See Other",
            **base,
        )
    if http_status in (404, 410):
        return PollResult(Kind.GONE, detail=f"HTTP {http_status}", **base)
    if http_status in (408, 425, 429) or http_status >= 500:
        return PollResult(Kind.RETRY, detail=f"HTTP {http_status}", **base)
    if isinstance(doc, dict) and "percentageComplete" in doc:
        pct = _percentage(doc.get("percentageComplete"))
        if pct is not False and 200 <= http_status < 300:
            return PollResult(
                Kind.PROGRESS, percentage=pct, operation=_str_or_none(doc.get("operation")), detail="no status", **base
            )
    what = "JSON without AsyncJobStatus fields" if doc is not None else "a body that is not JSON"
    return PollResult(Kind.INVALID, detail=f"HTTP {http_status} with {what}", **base)
