"""A job's guarded change, as the pure planning code describes it and the store applies it atomically."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from relay.core.schema import Job

__all__ = ["JobOp", "NewEvent"]


class NewEvent(TypedDict):
    """An event a change records: its id (the webhook-id), type and body (serialised once)."""

    id: str
    type: str
    body: str


@dataclass(slots=True)
class JobOp:
    """One job's guarded change: applied only if the job's sequence is still ``prev_seq`` (and its ``phase``
    and ``expect`` fields still hold). ``set``, ``delete`` and ``expect`` name stored job fields (``JOB.*``)."""

    job: str
    prev_seq: int
    set: dict[str, str] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)
    terminal: bool = False
    phase: str | None = None
    #: fields that must still hold these values ('' for absent), else the op is stale
    expect: dict[str, str] = field(default_factory=dict)
    #: the job's monitor comes due no later than this (ms, Redis clock)
    wake_ms: int | None = None

    def as_json(self) -> dict[str, Any]:
        known = Job.stored_names
        if not (known.issuperset(self.set) and known.issuperset(self.delete) and known.issuperset(self.expect)):
            unknown = (set(self.set) | set(self.delete) | set(self.expect)) - known
            raise ValueError(f"not job fields: {sorted(unknown)}")
        out: dict[str, Any] = {"job": self.job, "prev_seq": self.prev_seq, "terminal": self.terminal}
        if self.expect:
            out["expect"] = self.expect
        if self.wake_ms is not None:
            out["wake"] = self.wake_ms
        if self.set:
            out["set"] = self.set
        if self.delete:
            out["del"] = self.delete
        if self.events:
            out["events"] = self.events
        if self.phase is not None:
            out["phase"] = self.phase
        return out

    @classmethod
    def on(cls, job: Job, **changes: Any) -> JobOp:
        """A change of ``job`` guarded by the sequence it was read at."""
        return cls(job=job.id, prev_seq=job.sequence, **changes)
