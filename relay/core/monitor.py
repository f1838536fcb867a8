"""Classify one monitor response: pure, no I/O.

Real monitors are inconsistent, so the JSON body decides first and the HTTP status second. The rules,
each backed by a case in ``tests/corpus`` (docs/polling.md says the same for users):

- **Status words** are compared case-insensitively (as Microsoft's Graph SDKs do) and documented
  synonyms map to AsyncJobStatus words: ``succeeded``/``success`` → completed, ``canceled`` →
  cancelled, ``running`` → inProgress (Graph's longRunningOperation and the Graph API guidelines).
  The monitor's own word is kept and passed on as ``monitorStatus``. A word relay does not know is
  progress of an unknown kind (``unknown_status``); the poller bounds how long it accepts that.
- **Failure reasons** come from ``errorCode``/``statusDescription`` (``statusDetail`` in Graph's
  longRunningOperation) or from an ``error`` object (``code``, ``message``, ``target``, ``innerError``,
  ``details``: OneDrive for Business ``/_api/v2.1/.../operations`` monitors; see relay/core/graph_error.py).
- **The percentage** is ``percentageComplete``, else ``percentComplete`` (v2.1 operations write both), else
  ``percentageCompleted`` (Graph's attackSimulationOperation); the action's name ``operation``, else ``type``
  (richLongRunningOperation).
- **The new item** comes from ``resourceId``, else a ``resourceLocation`` URL, else the ``Location``
  header, in either path form: ``/items/<id>`` or the OData key ``items('<id>')``, percent-decoded.
- A **200 whose body is a DriveItem** is a completion carrying its item; a **303** is a completion even
  with an empty body. An AsyncJobStatus body counts as that status even on a 5xx.
- An **error answer whose Graph error code cannot change** (``operationNotFound`` on a 500, after a
  name conflict) ends the job: gone for "no such operation/item", failed for the request's own faults.
  Other 5xx, 429 and network errors are transient (``RETRY``); the poller bounds bare 5xx stretches.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, urlsplit

from relay.core import jsonfast
from relay.core.graph_error import GraphError, graph_error
from relay.core.schema import JobStatus

__all__ = [
    "FAILED_STATUSES",
    "MAX_BODY",
    "Kind",
    "PollResult",
    "canonical_status",
    "classify",
    "job_status",
    "resource_from_url",
]

#: larger monitor (and DriveItem) responses count as errors
MAX_BODY = 1024 * 1024
FAILED_STATUSES = frozenset({"failed", "deleteFailed", "cancelled"})
_NOT_STARTED = frozenset({"notStarted", "waiting"})
#: every status word relay understands, lower-cased, with the AsyncJobStatus word it means
_STATUS_WORDS: dict[str, str] = {
    # AsyncJobStatus (OneDrive and Graph docs)
    **{w.lower(): w for w in ("notStarted", "inProgress", "completed", "failed", "cancelled", "waiting")},
    **{w.lower(): w for w in ("cancelPending", "updating", "deletePending", "deleteFailed")},
    # synonyms: Graph longRunningOperation / Graph API guidelines / Azure, and "success"
    "running": "inProgress",
    "succeeded": "completed",
    "success": "completed",
    "canceled": "cancelled",
}
#: Graph error codes an answer can carry that no later poll will change (case-insensitive)
_GONE_CODES = frozenset({"operationnotfound", "itemnotfound"})
_FINAL_CODES = frozenset(
    c.lower()
    for c in (
        "accessDenied",
        "invalidRange",
        "invalidRequest",
        "malwareDetected",
        "nameAlreadyExists",
        "notAllowed",
        "notSupported",
        "quotaLimitReached",
        "resourceModified",
        "resyncRequired",
        "unauthenticated",
    )
)
#: the percentage's names: AsyncJobStatus and Graph's operations, v2.1 operations, attackSimulationOperation
_PERCENTAGES = ("percentageComplete", "percentComplete", "percentageCompleted")
_DRIVE_ITEM_FIELDS = ("name", "file", "folder", "parentReference", "size", "webUrl", "eTag")
_ITEM_IN_PATH = re.compile(r"/items/([^/?#]+)")
_ITEM_AS_KEY = re.compile(r"items\('((?:[^']|'')*)'\)")


class Kind(StrEnum):
    PROGRESS = "progress"  # still running: status and/or percentage (or a status word relay does not know)
    COMPLETED = "completed"
    FAILED = "failed"  # the monitor says failed / deleteFailed / cancelled, or a final Graph error
    GONE = "gone"  # 404 / 410, or a final "no such operation": the monitor no longer exists
    RETRY = "retry"  # transient: 429, 5xx, network; back off
    INVALID = "invalid"  # an answer that is not AsyncJobStatus


@dataclass(slots=True)  # not frozen: CONTRIBUTING.md (made on every operation)
class PollResult:
    kind: Kind
    http_status: int | None = None
    status: str | None = None  # the monitor's own status word, as it wrote it
    percentage: float | None = None
    operation: str | None = None
    resource_id: str | None = None
    error_code: str | None = None
    status_description: str | None = None
    error_message: str | None = None
    error_target: str | None = None
    error: GraphError | None = None  # the whole error object, when the answer carried one
    unknown_status: bool = False
    drive_item: dict[str, Any] | None = None
    location: str | None = None
    retry_after: str | None = None
    detail: str = ""


def canonical_status(word: str | None) -> str | None:
    """The AsyncJobStatus word a monitor's status word means, or None for a word relay does not know."""
    return _STATUS_WORDS.get(word.lower()) if word else None


def job_status(kind: Kind, monitor_status: str | None) -> JobStatus:
    """The job status (notStarted|inProgress|completed|failed) a poll result implies."""
    if kind is Kind.COMPLETED:
        return JobStatus.COMPLETED
    if kind is Kind.FAILED:
        return JobStatus.FAILED
    if canonical_status(monitor_status) in _NOT_STARTED:
        return JobStatus.NOT_STARTED
    return JobStatus.IN_PROGRESS


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


def resource_from_url(url: str | None, *, last_segment: bool = False) -> str | None:
    """The item id in ``.../items/<id>`` or ``...items('<id>')`` (percent-decoded); an empty key is None.

    With ``last_segment`` (a ``resourceLocation``, which names the resource itself) a URL in neither
    form gives its last path segment.
    """
    if not url:
        return None
    match = _ITEM_AS_KEY.search(url)
    if match:
        found = unquote(match.group(1)).replace("''", "'")
    elif match := _ITEM_IN_PATH.search(url):
        found = unquote(match.group(1))
    elif last_segment:
        found = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
    else:
        return None
    return found or None


def classify(
    http_status: int,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    too_large: bool = False,
) -> PollResult:
    # header values are read as UTF-8 with surrogateescape: bytes that are not UTF-8 come as lone surrogates
    location = _header(headers, "Location")
    retry_after = _header(headers, "Retry-After")
    base: dict[str, Any] = {"http_status": http_status, "location": location, "retry_after": retry_after}

    if too_large:
        return PollResult(Kind.INVALID, detail="response body over 1 MiB", **base)

    doc: Any = None
    if body:
        try:
            doc = jsonfast.loads_peer(body)  # lone surrogates scrubbed, nesting bounded: nothing relay cannot store
        except ValueError:
            doc = None

    if isinstance(doc, dict) and isinstance(doc.get("status"), str) and doc["status"]:
        return _status_answer(doc, location, base)

    if isinstance(doc, dict) and _looks_like_drive_item(doc) and http_status in (200, 201, 303):
        return PollResult(
            Kind.COMPLETED, status="completed", percentage=100.0, resource_id=doc["id"], drive_item=doc, **base
        )

    if http_status == 303:
        return PollResult(
            Kind.COMPLETED,
            status="completed",
            percentage=100.0,
            resource_id=resource_from_url(location),
            detail="303 See Other",
            **base,
        )
    final = _final_error(http_status, doc, base)
    if final is not None:
        return final
    if http_status in (408, 425, 429) or http_status >= 500:
        return PollResult(Kind.RETRY, detail=f"HTTP {http_status}", **base)
    if isinstance(doc, dict) and any(name in doc for name in _PERCENTAGES):
        pct = _percentage(_first(doc, _PERCENTAGES))
        if pct is not False and 200 <= http_status < 300:
            return PollResult(Kind.PROGRESS, percentage=pct, operation=_operation(doc), detail="no status", **base)
    what = "JSON without AsyncJobStatus fields" if doc is not None else "a body that is not JSON"
    return PollResult(Kind.INVALID, detail=f"HTTP {http_status} with {what}", **base)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name) or headers.get(name.lower())
    return jsonfast.scrub(value) if value else None


def _final_error(http_status: int, doc: Any, base: dict[str, Any]) -> PollResult | None:
    """A 404/410, or an error answer whose Graph error cannot change (the operation is gone, or failed)."""
    if http_status in (404, 410):
        return PollResult(Kind.GONE, detail=f"HTTP {http_status}", **_error_fields(graph_error(doc)), **base)
    if http_status < 400 or http_status in (408, 425, 429):
        return None
    error = graph_error(doc)
    code = (error.code if error else None) or ""
    if code.lower() in _GONE_CODES:
        return PollResult(Kind.GONE, detail=f"HTTP {http_status} {code}", **_error_fields(error), **base)
    if code.lower() in _FINAL_CODES:
        return PollResult(Kind.FAILED, detail=f"HTTP {http_status} {code}", **_error_fields(error), **base)
    return None


def _error_fields(error: GraphError | None) -> dict[str, Any]:
    if error is None:
        return {}
    return {"error_code": error.code, "error_message": error.message, "error_target": error.target, "error": error}


def _first(doc: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The value of the first of ``names`` that ``doc`` has (None when it has none)."""
    for name in names:
        if name in doc:
            return doc[name]
    return None


def _operation(doc: dict[str, Any]) -> str | None:
    return _str_or_none(doc.get("operation")) or _str_or_none(doc.get("type"))


def _status_answer(doc: dict[str, Any], location: str | None, base: dict[str, Any]) -> PollResult:
    """An answer with a ``status`` word: AsyncJobStatus, or Graph's long-running operation."""
    pct = _percentage(_first(doc, _PERCENTAGES))
    if pct is False:
        return PollResult(Kind.INVALID, detail="percentageComplete is not a number", **base)
    status: str = doc["status"]
    meaning = canonical_status(status)
    fields: dict[str, Any] = {
        "status": status,
        "percentage": pct,
        "operation": _operation(doc),
        "resource_id": _str_or_none(doc.get("resourceId")),
        "status_description": _str_or_none(doc.get("statusDescription")) or _str_or_none(doc.get("statusDetail")),
        **_error_fields(graph_error(doc)),
    }
    fields["error_code"] = _str_or_none(doc.get("errorCode")) or fields.get("error_code")
    if meaning == "completed":
        fields["resource_id"] = (
            fields["resource_id"]
            or resource_from_url(_str_or_none(doc.get("resourceLocation")), last_segment=True)
            or resource_from_url(location)
        )
        fields["percentage"] = 100.0
        return PollResult(Kind.COMPLETED, **fields, **base)
    if meaning in FAILED_STATUSES:
        return PollResult(Kind.FAILED, **fields, **base)
    return PollResult(Kind.PROGRESS, unknown_status=meaning is None, **fields, **base)
