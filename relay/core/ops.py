"""A job's guarded change, as the pure planning code describes it and the store applies it atomically."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from relay.core.schema import Job, Phase

__all__ = ["JobOp", "NewEvent"]


class NewEvent(TypedDict):
    """An event a change records: its id (the webhook-id), type and body (serialised once)."""

    id: str
    type: str
    body: str


@dataclass(slots=True)
class JobOp:
    """One job's guarded change: applied only if the job's sequence is still ``prev_seq`` (and its ``phase``
    and ``expect`` fields still hold). ``set`` and ``expect`` are job records made with keywords
    (``Job(status=JobStatus.FAILED)``): only the fields they name."""

    job: str
    prev_seq: int
    set: Job | None = None
    events: list[NewEvent] = field(default_factory=list)
    terminal: bool = False
    phase: Phase | None = None
    #: fields that must still hold these values ('' for absent), else the op is stale
    expect: Job | None = None
    #: the job's monitor comes due no later than this (ms, Redis clock)
    wake_ms: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The op as lib/job_op.lua takes it."""
        out: dict[str, Any] = {"job": self.job, "prev_seq": self.prev_seq, "terminal": self.terminal}
        if self.expect is not None:
            out["expect"] = self.expect.fields
        if self.wake_ms is not None:
            out["wake"] = self.wake_ms
        if self.set is not None and self.set.fields:
            out["set"] = self.set.fields
        if self.events:
            out["events"] = self.events
        if self.phase is not None:
            out["phase"] = self.phase.value
        return out

    @classmethod
    def on(
        cls,
        job: Job,
        *,
        set: Job | None = None,
        events: list[NewEvent] | None = None,
        terminal: bool = False,
        phase: Phase | None = None,
        expect: Job | None = None,
        wake_ms: int | None = None,
    ) -> JobOp:
        """A change of ``job`` guarded by the sequence it was read at."""
        return cls(job.id, job.sequence, set, events or [], terminal, phase, expect, wake_ms)
