"""What the simulator's Graph says, in the forms Microsoft publishes (docs/graph-forms.md lists each source).

- **AsyncJobStatus** (OneDrive's ``/monitor/...``): ``operation`` (``ItemCopy``; ``DownloadUrl`` for an upload
  from URL, as the AsyncJobStatus resource and the monitors in issues #63 and #306 write it), ``percentageComplete``,
  ``status``; a failure adds ``errorCode`` and ``statusDescription``.
- **v2.1 operations** (SharePoint / OneDrive for Business ``/_api/v2.x/.../operations/...``): ``id``,
  ``createdDateTime``, ``lastActionDateTime``, ``percentageComplete`` *and* ``percentComplete``, ``resourceId``,
  ``resourceLocation``, ``status``, and a failure's ``error`` object (Graph beta driveItem copy, examples 2, 3, 5
  and 10). They answer ``200`` while running (OneDrive/onedrive-api-docs #852).
- **Errors**: ``{"error": {"code", "message", "innerError"}}``; throttling as Graph's throttling guidance shows
  it (``429``, ``Retry-After: 2.128``, ``TooManyRequests`` with an ``innerError``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "OPERATIONS",
    "THROTTLE_RETRY_AFTER",
    "error_body",
    "name_conflict_details",
    "throttled_body",
    "unavailable_body",
    "v21_status",
]

#: the ``operation`` word a OneDrive monitor writes for each action
OPERATIONS = {"copy": "ItemCopy", "upload": "DownloadUrl"}
#: Graph's throttling guidance: "Retry-After: 2.128"
THROTTLE_RETRY_AFTER = "2.128"
#: v2.1 operations write the year 1 for both dates (Graph beta driveItem copy, examples 2, 3, 5, 10)
_NO_DATE = "0001-01-01T00:00:00Z"


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "")


def error_body(code: str, message: str, inner: dict[str, Any] | None = None) -> dict[str, Any]:
    """Graph's error response (concepts/errors.md): code, message and, when given, innerError."""
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innerError"] = inner
    return {"error": error}


def throttled_body() -> dict[str, Any]:
    """The 429 body of Graph's throttling guidance, with a fresh date and request-id."""
    inner = {
        "code": "429",
        "date": _stamp(),
        "message": "Please retry after",
        "request-id": str(uuid.uuid4()),
        "status": "429",
    }
    return error_body("TooManyRequests", "Please retry again later.", inner)


def unavailable_body() -> dict[str, Any]:
    """A 503: the serviceNotAvailable code of Graph's error codes (the message is the code's description)."""
    return error_body("serviceNotAvailable", "The service is not available. Try the request again after a delay.")


def name_conflict_details(count: int = 1) -> dict[str, Any]:
    """The failure of Graph beta driveItem copy example 5: no code, the reason in each detail."""
    detail = {"code": "nameAlreadyExists", "message": "Name already exists"}
    return {"message": "Errors occurred during copy/move operation.", "details": [dict(detail) for _ in range(count)]}


def v21_status(
    op_id: str,
    status: str,
    pct: float,
    *,
    base_url: str,
    drive_id: str,
    resource_id: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A v2.1 operation as a SharePoint / OneDrive for Business monitor answers it."""
    body: dict[str, Any] = {
        "@odata.context": f"{base_url}/_api/v2.1/$metadata#drives('{drive_id}')/operations/$entity",
        "id": op_id.lower(),
        "createdDateTime": _NO_DATE,
        "lastActionDateTime": _NO_DATE,
    }
    if error is None:
        number: float | int = round(pct) if pct == round(pct) else round(pct, 1)
        body["percentageComplete"] = number
        body["percentComplete"] = number
    if resource_id is not None:
        body["resourceId"] = resource_id
        body["resourceLocation"] = f"{base_url}/_api/v2.0/drives/{drive_id}/items/{resource_id}"
    body["status"] = status
    if error is not None:
        body["error"] = error
    return body
