"""The calls of the scripts that carry most, typed: each one is sent as a JSON record, the script's ``call`` table
(the others' calls are small dicts, built where :class:`relay.store.jobs.Store` calls them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.core.schema import DeliveryOutcome

__all__ = ["AckCall", "ApplyPollCall", "ChunkCall", "RegisterCall"]


@dataclass  # not frozen, no slots: CONTRIBUTING.md (made on every registration, sent as JSON)
class RegisterCall:
    """One call of register.lua."""

    job_id: str
    fields: dict[str, str]
    monitor_key: str  # '' for an action that finished at once
    monitor_url: str  # what is stored: sealed
    first_op: dict[str, Any]  # {} or the finished action's job op
    idempotency_key: str = ""
    idempotency_ttl: int = 86400
    digest: str = ""
    max_active: int = 0  # the owner's active jobs at most (0: no limit)
    max_rate: int = 0  # the owner's registrations a second at most (0: no limit)
    max_monitor_jobs: int = 0  # jobs the monitor may have at most, this one included (0: no limit)
    admitted: bool = False  # a cluster's: admit.lua did the owner's part (idempotency, limits, index)
    # a cluster's: when admit.lua listed the job (ms, the owner's node): its created time, so that the listing's
    # order (the index entry's id) and createdDateTime agree
    admitted_at: int = 0


@dataclass  # not frozen, no slots: CONTRIBUTING.md (made on every poll, sent as JSON)
class ApplyPollCall:
    """One call of apply_poll.lua."""

    member: str
    token: str
    delay_ms: int
    monitor_fields: dict[str, str]
    ops: list[dict[str, Any]]
    jobs: int  # the jobs the claim read; 0: the monitor may have none left (the script then checks)


@dataclass  # no slots: CONTRIBUTING.md (sent as JSON)
class ChunkCall:
    """One step of poll_chunk.lua: the poll of a monitor whose jobs are read and written a chunk at a time."""

    member: str
    token: str
    monitor_fields: dict[str, str]  # the poll's answer, in its first step
    clear: list[str]  # monitor fields to delete (the stored answer, in the last step)
    ops: list[dict[str, Any]]  # planned from the jobs the previous step read
    cursor: str  # where the next chunk starts ('0': the first)
    count: int  # about how many jobs a chunk holds
    lease_ms: int  # the lease runs this long again from each step
    last: bool = False  # the last step: the lease is let go and the monitor comes due after delay_ms
    delay_ms: int = 0
    jobs: int = 0  # the last step: how many jobs the poll read in all (0: the monitor may have none left)
    event_ttl: int = 0  # seconds an event lives
    retention: int = 0  # seconds an ended job stays readable
    first_ms: int = 0  # RELAY_POLL_INITIAL_INTERVAL: how soon a job that joined meanwhile is polled


@dataclass  # not frozen, no slots: CONTRIBUTING.md (made on every delivery, sent as JSON)
class AckCall:
    """One call of delivery_ack.lua."""

    job: str
    token: str
    event: str
    outcome: DeliveryOutcome
    delay_ms: int
    superseded: list[str]
    records: list[str]  # attempt records, JSON texts
    error: str  # JSON text
