"""One schema for what relay stores: the states as enums, and a typed record per Redis hash.

Each record's attributes are the hash's fields, declared once with their stored name, type and default;
where the stored name is shorter or older than the concept's (``pct`` for a monitor's percentage, ``seq``
for a sequence), the attribute carries the concept's name. Used by:

* readers: ``Job.from_hash(job_id, fields)`` is a typed view of a hash (a field is read when used; unknown
  fields are ignored, absent ones are their defaults, so a record written by an older version still reads);
* writers: ``JOB.status`` is the stored name of the field (``JobOp.set`` keys are checked against them);
* the Lua scripts: ``tests/test_scripts.py`` checks every field name they use is declared here.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from enum import StrEnum
from typing import Any, ClassVar, Generic, Self, TypeVar, overload

__all__ = [
    "EVENT",
    "JOB",
    "MONITOR",
    "DeliveryOutcome",
    "Event",
    "EventState",
    "EventType",
    "Field",
    "Job",
    "JobStatus",
    "Migrations",
    "Monitor",
    "Phase",
    "Stored",
]

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)


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


class Field(Generic[T]):
    """One field of a stored record, as declared: its stored name, how its text reads, its default when absent.
    (On the record class it becomes the plain default; typed through ``__get__`` for the type checker.)"""

    __slots__ = ("default", "name", "read")

    def __init__(self, name: str, read: Callable[[str], T], default: T) -> None:
        self.name = name
        self.read = read
        self.default = default

    @overload
    def __get__(self, record: None, owner: type[Any]) -> Field[T]: ...

    @overload
    def __get__(self, record: Stored, owner: type[Any]) -> T: ...

    def __get__(self, record: Stored | None, owner: type[Any]) -> T | Field[T]:
        if record is None:
            return self
        raw = record.fields.get(self.name)
        return self.default if raw is None or raw == "" else self.read(raw)


# readers are builtins where they can be (a record is read on every poll and delivery): str is kept as is
def text(name: str) -> Field[str]:
    return Field(name, str, "")


def number(name: str, default: int = 0) -> Field[int]:
    return Field(name, int, default)


def decimal(name: str, default: float = 0.0) -> Field[float]:
    return Field(name, float, default)


def flag(name: str) -> Field[bool]:
    return Field(name, "1".__eq__, False)


def choice(name: str, enum: type[E], default: E) -> Field[E]:
    """A field holding an enum's value (read by a dict lookup: much cheaper than calling the enum)."""
    return Field(name, {member.value: member for member in enum}.__getitem__, default)


def _stored(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, StrEnum):
        return value.value
    return str(value)


class Stored:
    """A record read from a Redis hash. Each record class declares its fields once (:class:`Field`: stored name,
    type, default); on the class they become plain defaults, and :meth:`from_hash` sets what the hash holds,
    converted, so reading a field is a plain attribute read. ``names`` maps an attribute to its stored name,
    ``stored_names`` are all of them; ``fields`` keeps the hash as read."""

    names: ClassVar[types.SimpleNamespace] = types.SimpleNamespace()
    stored_names: ClassVar[frozenset[str]] = frozenset()
    _attrs: ClassVar[dict[str, str]] = {}
    _readers: ClassVar[dict[str, tuple[str, Callable[[str], Any]]]] = {}

    def __init__(self, key_id: str, **values: Any) -> None:
        """A record with these attribute values (the others absent: their defaults)."""
        self.id = key_id
        self.fields: dict[str, str] = {}
        self._set(values)

    @classmethod
    def from_hash(cls, key_id: str, fields: dict[str, str]) -> Self:
        """The record of a hash read from Redis (``key_id``: the id in its key); unknown fields are ignored."""
        record = cls.__new__(cls)
        record.id = key_id
        record.fields = fields
        readers = cls._readers
        own = record.__dict__
        for name, raw in fields.items():
            reader = readers.get(name)
            if reader is not None and raw != "":
                attr, read = reader
                own[attr] = raw if read is str else read(raw)
        return record

    def _set(self, values: dict[str, Any]) -> None:
        for attr, value in values.items():
            self.fields[self._attrs[attr]] = _stored(value)
            setattr(self, attr, value)

    def replace(self, **values: Any) -> Self:
        """A copy with these attributes changed."""
        copy = self.from_hash(self.id, dict(self.fields))
        copy._set(values)
        return copy

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Stored)
            and type(other) is type(self)
            and (self.id, self.fields) == (other.id, other.fields)
        )

    def __hash__(self) -> int:
        return hash((type(self), self.id))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, {self.fields!r})"

    def __init_subclass__(cls) -> None:
        declared = {attr: value for attr, value in vars(cls).items() if isinstance(value, Field)}
        cls._attrs = {attr: field.name for attr, field in declared.items()}
        cls._readers = {field.name: (attr, field.read) for attr, field in declared.items()}
        cls.names = types.SimpleNamespace(**cls._attrs)
        cls.stored_names = frozenset(cls._attrs.values())
        for attr, field in declared.items():
            setattr(cls, attr, field.default)  # reads of an absent field find the default on the class


class Job(Stored):
    """``relay:job:<id>``. The id is the key, not a field. Absent fields are defaults (bytes per job count)."""

    owner = text("owner")
    created = number("created")  # ms since the epoch, Redis clock
    callback_url = text("callback_url")
    monitor_key = text("monitor_key")
    monitor_host = text("monitor_host")
    drive_item_url = text("drive_item_url")
    authorization = text("authorization")  # sealed (relay/core/crypto.py)
    credential = text("credential")
    metadata = text("metadata")  # compact JSON
    secret = text("secret")
    progress_interval = decimal("progress_interval")
    sequence = number("seq")
    status = choice("status", JobStatus, JobStatus.NOT_STARTED)
    phase = choice("phase", Phase, Phase.TRACKING)
    percentage = decimal("percentage")
    operation = text("operation")
    monitor_status = text("monitor_status")
    status_description = text("status_description")
    resource_id = text("resource_id")
    drive_item = text("drive_item")  # JSON
    resolution_error = text("resolution_error")  # JSON
    error = text("error")  # JSON
    terminal = flag("terminal")
    auth_asks = number("auth_asks")
    auth_wait_until = number("auth_wait_until")  # ms
    auth_error = text("auth_error")  # JSON: the refusal the job ends with if no usable authorization comes
    polls = number("polls")  # the monitor's, kept when the job ends (its monitor may be gone)
    last_polled = number("last_polled")


class Monitor(Stored):
    """``relay:monitor:<key>``: the URL (sealed), the poll state, and a field ``j:<job id>`` per job sharing it."""

    url = text("url")
    lane = text("lane")  # its lane of the monitors schedule: its first job's tenant ('' the default lane)
    #: how many jobs share it, stored once it has had more than one (relay/store/lua/lib/monitors.lua)
    jobs = number("jobs")
    status = text("status")  # the monitor's own last status word
    percentage = decimal("pct")
    status_description = text("desc")
    operation = text("operation")
    polls = number("polls")
    last_polled = number("last_polled")
    streak = number("streak")  # polls in a row that brought nothing new
    invalid = number("invalid")  # answers in a row that were not AsyncJobStatus
    errors = number("errors")  # transient errors in a row
    completed = flag("completed")
    resource_id = text("resource_id")
    drive_item = text("drive_item")
    base_ms = number("base_ms")  # the baseline of the progress rate (relay/core/tracking.py); 0: none yet
    base_percentage = decimal("base_pct")
    server_errors_since = number("e5")  # relay/core/stretches.py
    unknown_status_since = number("uk")
    not_before = number("nb")  # ms: the end of the last answer's Retry-After (a job joining waits for it too)
    #: a poll whose jobs are written a chunk at a time: its answer (relay/core/tracking.py Outcome) until the last
    outcome = text("outcome")


class Event(Stored):
    """``relay:event:<id>``: one event, its body serialised once (every attempt sends the same bytes)."""

    job = text("job")
    type = text("type")
    sequence = number("seq")
    body = text("body")
    attempts = number("attempts")  # every attempt made, redeliveries included
    schedule_from = number("schedule_from")  # attempts made before the last redelivery started the schedule again
    state = Field("state", str, EventState.PENDING.value)
    created = number("created")  # ms


class Migrations(Stored):
    """``relay:migrations``: how far moving what earlier versions stored into today's layout has come."""

    dead = decimal("dead")  # dead letters up to this score (ms) are in their owners' indexes (migrate_indexes.lua)


JOB: Any = Job.names
MONITOR: Any = Monitor.names
EVENT: Any = Event.names
