"""The simulator's operations: their knobs (:class:`SimOptions`) and what each monitor answers over time."""

from __future__ import annotations

import dataclasses
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from relay.simulator.forms import OPERATIONS, THROTTLE_RETRY_AFTER, name_conflict_details, v21_status
from relay.simulator.knobs import camel, check_script, convert
from relay.simulator.names import is_file

__all__ = [
    "ACTION_ANSWERS",
    "COMPLETIONS",
    "DRIVE_ID",
    "MONITOR_STYLES",
    "OUTCOMES",
    "SimOperation",
    "SimOptions",
    "iso",
]

COMPLETIONS = ("303", "303-bare", "beta202", "beta200", "item200")
"""How a successful completion is reported on the monitor (:attr:`SimOptions.completion`)."""
OUTCOMES = ("completed", "failed", "deleteFailed", "cancelled")
"""Terminal status of an operation at the end of its duration (:attr:`SimOptions.outcome`)."""
MONITOR_STYLES = ("onedrive", "sharepoint")
"""Shapes of monitor URL (:attr:`SimOptions.monitor_style`)."""
ACTION_ANSWERS = ("202", "sync", "conflict", "redirect", "throttled", "unavailable")
"""How the action request is answered (:attr:`SimOptions.answer`)."""

RESOURCE_ALPHABET = string.ascii_uppercase + string.digits
DRIVE_ID = "b!Sim5ulatedDr1ve-kXd9JpQ0bN2cVtY7wL4aZe8RgU3fHs6iOmT"
# A failure stops part way: the failed body reports less than the last progress, which pollers must survive.
_FAILED_AT = 60.0


@dataclass
class SimOptions:
    """Knobs of one simulated operation; every field has a default.

    ``name`` is an addition: the name of the resulting DriveItem (the copy/upload request body's
    ``name`` sets it). Invalid values raise :class:`ValueError`.
    """

    duration: float = 5.0
    """Seconds from creation to completion; progress is linear in between."""
    operation: str = OPERATIONS["copy"]
    """The ``operation`` field of AsyncJobStatus bodies: ``ItemCopy``, ``DownloadUrl`` (an upload from URL)."""
    completion: str = "303"
    """``303`` | ``303-bare`` | ``beta202`` | ``beta200`` | ``item200`` (see :data:`COMPLETIONS`)."""
    always200: bool = False
    """Answer 200 instead of 202 while running (OneDrive for Business)."""
    outcome: str = "completed"
    """``completed`` | ``failed`` | ``deleteFailed`` | ``cancelled``: the terminal status."""
    name_conflict: bool = False
    """A failure is a name conflict: ``errorCode`` ``nameAlreadyExists``, or (``sharepoint`` monitors) the error of
    Graph beta driveItem copy example 5, with no code and one ``nameAlreadyExists`` detail."""
    error_code: str = "AccessDenied_CopyFailed"
    """``errorCode`` of a failed body."""
    status_description: str = "Copy failed: access denied"
    """``statusDescription`` of a failed body."""
    not_started_for: float = 0.0
    """The first seconds report ``notStarted`` with ``percentageComplete`` 0."""
    stuck: bool = False
    """``percentageComplete`` stays 0 while running."""
    gone_after: float | None = None
    """Seconds after completion when the monitor starts answering 404 (None: never)."""
    rate_429: float = 0.0
    """Probability that a poll is answered 429."""
    retry_after: str | None = THROTTLE_RETRY_AFTER
    """``Retry-After`` of 429/503 answers (seconds, with a fraction as Graph writes it, or an HTTP date); None:
    no header."""
    rate_503: float = 0.0
    """Probability of a 503."""
    rate_500: float = 0.0
    """Probability of a 500 with a plain-text body."""
    status_on_500: bool = False
    """A 500's body is nevertheless a valid AsyncJobStatus of the current state."""
    junk: bool = False
    """Every poll answers 200 ``text/html`` junk."""
    latency: float = 0.0
    """Seconds to wait before answering each poll."""
    monitor_style: str = "onedrive"
    """``onedrive``: ``{base}/monitor/{id}``;
    ``sharepoint``: ``{base}/_api/v2.0/drives/{d}/operations/{id}?tempauth=...`` (no ``monitor`` segment, a secret),
    answering v2.1 operations (``percentComplete`` too, ``resourceLocation``, an ``error`` object; 200 running)."""
    script: list[dict[str, Any]] | None = None
    """Overrides everything else: poll n answers ``script[min(n, len - 1)]``, each ``{"status", "body", "headers"}``."""
    item_ids: list[str] | None = None
    """More resource ids the item endpoint answers with this operation's DriveItem (a scripted completion that
    names its item only in a ``Location`` or ``resourceLocation``)."""
    name: str = "Copy of LargeFolder1"
    """Name of the resulting DriveItem."""
    answer: str = "202"
    """How the action request itself is answered: ``202`` (a monitor), ``sync`` (201 with the new DriveItem at
    once, as some SharePoint copies do), ``conflict`` (409 ``nameAlreadyExists``), ``redirect`` (302 elsewhere),
    ``throttled`` (429 with ``retryAfter``), ``unavailable`` (503 with ``retryAfter``)."""
    item_throttled: float = 0.0
    """The first this many GETs of the new item answer 429 with ``retryAfter`` (then the item)."""

    def __post_init__(self) -> None:
        for knob, value, allowed in (
            ("completion", self.completion, COMPLETIONS),
            ("outcome", self.outcome, OUTCOMES),
            ("monitor_style", self.monitor_style, MONITOR_STYLES),
            ("answer", self.answer, ACTION_ANSWERS),
        ):
            if value not in allowed:
                raise ValueError(f"knob {knob} must be one of {', '.join(allowed)}, not {value!r}")
        for knob in ("duration", "not_started_for", "latency", "gone_after"):
            amount = getattr(self, knob)
            if amount is not None and not amount >= 0:
                raise ValueError(f"knob {knob} must be a number >= 0")
        for knob in ("rate_429", "rate_503", "rate_500"):
            if not 0.0 <= getattr(self, knob) <= 1.0:
                raise ValueError(f"knob {knob} must be a probability between 0 and 1")
        if self.script is not None:
            check_script(self.script)
        if self.item_ids is not None and not all(isinstance(i, str) and i for i in self.item_ids):
            raise ValueError("knob itemIds must be a list of non-empty strings")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SimOptions:
        """Knobs from JSON or a query string, camelCase or snake_case; strings are converted to the field type."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        by_camel = {camel(name): name for name in known}
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            name = key if key in known else by_camel.get(key)
            if name is None:
                raise ValueError(f"unknown knob {key!r}")
            kwargs[name] = convert(str(known[name].type), raw, name)
        return cls(**kwargs)

    def to_json(self) -> dict[str, Any]:
        """The knobs in camelCase, as the control endpoints show them."""
        return {camel(key): value for key, value in dataclasses.asdict(self).items()}


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class SimOperation:
    """One simulated long-running action and what its monitor has seen."""

    id: str
    resource_id: str
    options: SimOptions
    created: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` at creation; the state is computed from the time elapsed since."""
    polls: int = 0
    """Monitor GETs received, including refused ones (credentials, wrong tempauth)."""
    monitor_url: str = ""
    base_url: str = ""
    """Origin of the URLs this operation hands out (monitor, 303 ``Location``)."""
    deleted: bool = False
    """Set by ``DELETE /sim/operations/{id}``: the monitor answers 404 from then on."""
    tempauth: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    parent_reference: dict[str, Any] = field(
        default_factory=lambda: {"driveId": DRIVE_ID, "driveType": "business", "path": "/drive/root:/Documents"}
    )
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    polled_at: list[float] = field(default_factory=list)
    """``time.monotonic()`` of each monitor GET."""
    item_requested_at: list[float] = field(default_factory=list)
    """``time.monotonic()`` of each GET of the new item."""

    def elapsed(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.created

    def is_complete(self, now: float | None = None) -> bool:
        """Whether the operation has finished successfully (its item exists)."""
        opts = self.options
        return opts.outcome == "completed" and self.elapsed(now) >= opts.duration

    def drive_item(self) -> dict[str, Any]:
        """The DriveItem this operation produces."""
        opts = self.options
        modified = self.created_at + timedelta(seconds=opts.duration)
        item: dict[str, Any] = {
            "id": self.resource_id,
            "name": opts.name,
            "size": 12019,
            "createdDateTime": iso(self.created_at),
            "lastModifiedDateTime": iso(modified),
            "webUrl": f"https://contoso-my.sharepoint.com/personal/me_contoso_com/Documents/{opts.name}",
            "parentReference": dict(self.parent_reference),
        }
        if opts.operation == OPERATIONS["upload"] or is_file(opts.name):
            item["file"] = {"mimeType": "application/octet-stream"}
        else:
            item["folder"] = {"childCount": 12}
        return item

    def status_body(self, now: float | None = None) -> dict[str, Any] | None:
        """The AsyncJobStatus of the current state, whatever the completion form (None when gone)."""
        opts = self.options
        elapsed = self.elapsed(now)
        if self.deleted or (opts.gone_after is not None and elapsed >= opts.duration + opts.gone_after):
            return None
        if elapsed < opts.duration:
            if elapsed < opts.not_started_for:
                return self._body("notStarted", 0.0)
            pct = 0.0 if opts.stuck or opts.duration <= 0 else min(99.9, 100.0 * elapsed / opts.duration)
            return self._body("inProgress", pct)
        if opts.outcome != "completed":
            return self._failed(0.0 if opts.stuck else _FAILED_AT)
        if opts.monitor_style == "sharepoint":
            return self._v21("completed", 100.0, resource_id=self.resource_id)
        return {"percentageComplete": 100.0, "resourceId": self.resource_id, "status": "completed"}  # as the seeds show

    def state(self, now: float | None = None) -> tuple[int, dict[str, str], Any]:
        """The fault-free monitor answer at ``now``: (HTTP status, headers, JSON body or None for no body).

        For a scripted operation: the step the latest poll got (the first before any poll).
        """
        opts = self.options
        gone: tuple[int, dict[str, str], Any] = (
            404,
            {},
            {"error": {"code": "itemNotFound", "message": "The monitor no longer exists."}},
        )
        if self.deleted:
            return gone
        if opts.script:
            step = opts.script[min(max(self.polls - 1, 0), len(opts.script) - 1)]
            return int(step.get("status", 200)), dict(step.get("headers") or {}), step.get("body")
        body = self.status_body(now)
        if body is None:
            return gone
        running = 200 if opts.always200 or opts.monitor_style == "sharepoint" else 202
        if body["status"] != "completed":
            return running, {}, body
        location = {"Location": f"{self.base_url}/v1.0/me/drive/items/{self.resource_id}"}
        if opts.completion == "303":
            return 303, location, body
        if opts.completion == "303-bare":
            return 303, location, None
        if opts.completion == "beta202":
            return 202, {}, body
        if opts.completion == "beta200":
            return 200, {}, body
        return 200, {}, self.drive_item()  # item200

    def _body(self, status: str, pct: float) -> dict[str, Any]:
        if self.options.monitor_style == "sharepoint":
            return self._v21(status, pct)
        return {"operation": self.options.operation, "percentageComplete": round(pct, 1), "status": status}

    def _v21(self, status: str, pct: float, **extra: Any) -> dict[str, Any]:
        return v21_status(self.id, status, pct, base_url=self.base_url, drive_id=DRIVE_ID, **extra)

    def _failed(self, pct: float) -> dict[str, Any]:
        """A failure: AsyncJobStatus with errorCode and statusDescription, or a v2.1 operation's error object."""
        opts = self.options
        code = "nameAlreadyExists" if opts.name_conflict else opts.error_code
        if opts.monitor_style == "sharepoint":
            error = {"code": code, "message": opts.status_description}
            if opts.name_conflict:
                error = name_conflict_details()
            return self._v21(opts.outcome, pct, error=error)
        body = self._body(opts.outcome, pct)
        description = (
            name_conflict_details()["details"][0]["message"] if opts.name_conflict else opts.status_description
        )
        body.update(errorCode=code, statusDescription=description)
        return body
