"""One schema for what relay stores: the states as enums, and a typed record per Redis hash.

Each record's attributes are the hash's fields; where the stored name is shorter or older than the
concept's name (``pct`` for a monitor's percentage, ``seq`` for a sequence), the attribute carries the
concept's name and ``stored("...")`` the field's. Declared here once, used by:

* readers: ``Job.from_hash(job_id, fields)`` turns a hash into a typed record (unknown fields are ignored,
  absent ones take their defaults, so a record written by an older version still reads);
* writers: ``JOB.status`` is the stored name of the field (``JobOp.set`` keys are checked against them);
* the Lua scripts: ``tests/test_scripts.py`` checks every field name they use is declared here.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Self, TypeVar

__all__ = [
    "EVENT",
    "JOB",
    "MONITOR",
    "DeliveryOutcome",
    "Event",
    "EventState",
    "EventType",
    "Job",
    "JobStatus",
    "Monitor",
    "Phase",
    "Stored",
    "record",
    "stored",
]


class JobStatus(StrEnum):
    """A job's status as the API and events show it (AsyncJobStatus words, plus cancelled)."""

    NOT_STARTED = "notStarted"
    IN_PROGRESS = "inProgress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Phase(StrEnum):
    """What relay is doing with a job (stored value; the API shows :attr:`api_name`)."""

    TRACKING = "tracking"  # polling its monitor
    RESOLVING = "resolving"  # the action completed: fetching the DriveItem
    AUTHORIZING = "authorizing"  # the DriveItem request was refused: waiting for a PATCHed authorization
    DONE = "done"

    @property
    def api_name(self) -> str:
        return _PHASE_API_NAMES[self]


_PHASE_API_NAMES = {
    Phase.TRACKING: "tracking",
    Phase.RESOLVING: "resolving",
    Phase.AUTHORIZING: "awaitingAuthorization",
    Phase.DONE: "ended",
}


class EventType(StrEnum):
    PROGRESS = "job.progress"
    AUTHORIZATION_REQUIRED = "job.authorizationRequired"
    COMPLETED = "job.completed"
    FAILED = "job.failed"

    @property
    def terminal(self) -> bool:
        """The last event of a job: never superseded, always delivered last, redeliverable."""
        return self in (EventType.COMPLETED, EventType.FAILED)

    @classmethod
    def terminal_types(cls) -> frozenset[str]:
        return frozenset(t.value for t in cls if t.terminal)


class EventState(StrEnum):
    """Where an event stands in its delivery."""

    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    SUPERSEDED = "superseded"  # a newer event of the job made this progress event moot: recorded, not sent
    DEAD = "dead"  # the delivery schedule is exhausted: a dead letter, redeliverable
    GONE = "gone"  # the callback answered 410 Gone
    CANCELLED = "cancelled"


class DeliveryOutcome(StrEnum):
    """What one delivery attempt came to (``NONE``: nothing to send, the claim is only handed back)."""

    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"
    GONE = "gone"
    SUPERSEDED = "superseded"
    NONE = "none"


_STORED = "stored"
_ENUMS: dict[str, Callable[[str], Any]] = {"JobStatus": JobStatus, "Phase": Phase}


def stored(name: str, default: Any = None) -> Any:
    """A record field stored under another name than the attribute's."""
    return field(default=default, metadata={_STORED: name})


def _converter(kind: str) -> Callable[[str], Any]:
    if kind == "int":
        return lambda raw: int(raw) if raw else 0
    if kind == "float":
        return lambda raw: float(raw) if raw else 0.0
    if kind == "bool":
        return lambda raw: raw == "1"
    enum = _ENUMS.get(kind)
    if enum is not None:
        return enum
    return str


class Stored:
    """Base of the records: ``from_hash`` and the stored field names (made by :func:`record`)."""

    __slots__ = ()
    _readers: ClassVar[dict[str, tuple[str, Callable[[str], Any]]]] = {}
    names: ClassVar[types.SimpleNamespace] = types.SimpleNamespace()
    stored_names: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_hash(cls, key_id: str, fields: Mapping[str, str]) -> Self:
        """The record of a hash read from Redis (``key_id``: the id in its key); unknown fields are ignored."""
        readers = cls._readers
        values: dict[str, Any] = {}
        for name, raw in fields.items():
            reader = readers.get(name)
            if reader is not None:
                values[reader[0]] = reader[1](raw)
        return cls(key_id, **values)  # type: ignore[call-arg]


S = TypeVar("S", bound=type[Stored])


def record(cls: S) -> S:
    """Declare ``cls`` (a slots dataclass of :class:`Stored`) a stored record: its readers and stored names."""
    names = {f.name: f.metadata.get(_STORED, f.name) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    cls._readers = {
        names[f.name]: (f.name, _converter(str(f.type)))
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name != "id"
    }
    cls.names = types.SimpleNamespace(**names)
    cls.stored_names = frozenset(stored for attr, stored in names.items() if attr != "id")
    return cls


@record
@dataclass(slots=True)
class Job(Stored):
    """``relay:job:<id>``. The id is the key, not a field. Absent fields are defaults (bytes per job count)."""

    id: str
    owner: str = ""
    created: int = 0  # ms since the epoch, Redis clock
    callback_url: str = ""
    monitor_key: str = ""
    monitor_host: str = ""
    drive_item_url: str = ""
    authorization: str = ""  # sealed (relay/core/crypto.py)
    credential: str = ""
    metadata: str = ""  # compact JSON
    secret: str = ""
    progress_interval: float = 0.0
    sequence: int = stored("seq", 0)
    status: JobStatus = JobStatus.NOT_STARTED
    phase: Phase = Phase.TRACKING
    percentage: float = 0.0
    operation: str = ""
    monitor_status: str = ""
    status_description: str = ""
    resource_id: str = ""
    drive_item: str = ""  # JSON
    resolution_error: str = ""  # JSON
    error: str = ""  # JSON
    terminal: bool = False
    auth_asks: int = 0
    auth_wait_until: int = 0  # ms
    auth_error: str = ""  # JSON: the refusal the job ends with if no usable authorization comes
    polls: int = 0  # the monitor's, kept when the job ends (its monitor may be gone)
    last_polled: int = 0


@record
@dataclass(slots=True)
class Monitor(Stored):
    """``relay:monitor:<key>``: the URL (sealed), the poll state, and a field ``j:<job id>`` per job sharing it."""

    id: str
    url: str = ""
    lane: str = ""  # its lane of the monitors schedule: its first job's tenant ('' the default lane)
    status: str = ""  # the monitor's own last status word
    percentage: float = stored("pct", 0.0)
    status_description: str = stored("desc", "")
    operation: str = ""
    polls: int = 0
    last_polled: int = 0
    streak: int = 0  # polls in a row that brought nothing new
    invalid: int = 0  # answers in a row that were not AsyncJobStatus
    errors: int = 0  # transient errors in a row
    completed: bool = False
    resource_id: str = ""
    drive_item: str = ""
    base_ms: int = 0  # the baseline of the progress rate (relay/core/tracking.py); 0: none yet
    base_percentage: float = stored("base_pct", 0.0)
    server_errors_since: int = stored("e5", 0)  # relay/core/stretches.py
    unknown_status_since: int = stored("uk", 0)


@record
@dataclass(slots=True)
class Event(Stored):
    """``relay:event:<id>``: one event, its body serialised once (every attempt sends the same bytes)."""

    id: str
    job: str = ""
    type: str = ""
    sequence: int = stored("seq", 0)
    body: str = ""
    attempts: int = 0
    state: str = EventState.PENDING.value
    created: int = 0  # ms


JOB: Any = Job.names
MONITOR: Any = Monitor.names
EVENT: Any = Event.names
