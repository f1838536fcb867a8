"""One schema for what relay stores: the states as enums, and a typed record per Redis hash.

Each record's attributes are the hash's fields, declared once with their stored name, type and default;
where the stored name is shorter or older than the concept's (``pct`` for a monitor's percentage, ``seq``
for a sequence), the attribute carries the concept's name. A field renamed since (a job's ``cb``, written
``callback_url`` before: bytes per job count) also declares the name it had, which is read still. Used by:

* readers: ``Job.from_hash(job_id, fields)`` is a typed view of a hash (absent fields are their defaults,
  unknown ones are ignored, a field under the name it had before reads as under its own, so a record written by
  an older version still reads);
* writers: a change is a record made with keywords, ``Job(status=JobStatus.FAILED, error=text)`` (``JobOp.set``,
  a poll's monitor change, a registration, a PATCH): a misspelt field or a wrongly typed value fails mypy;
* the Lua scripts: :mod:`relay.store.scripts` generates their prelude from :data:`LUA_RECORDS` and
  :data:`LUA_ENUMS` (``JOB.terminal``, ``MONITOR.percentage`` is 'pct', ``EVENT_STATE.DELIVERED``...), as it
  does key names from ``keys.py``: no field name or state word is written in a script.

A process may write the renamed fields under their legacy names instead (:func:`write_legacy_names`,
``RELAY_STORE_LEGACY_FORMAT``: a rolling upgrade, so that the older processes beside it read what it writes); it
still reads both.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, ClassVar, Generic, Self, TypeVar, cast, dataclass_transform

__all__ = [
    "LUA_ENUMS",
    "LUA_RECORDS",
    "MONITOR_JOB_PREFIX",
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
    "Stats",
    "Stored",
    "stored_text",
    "write_legacy_names",
    "writes_legacy_names",
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
    """One field of a stored record, as declared: its stored name, how its text reads, its default when absent,
    and the name earlier versions stored it under ('': the same). On the record class it becomes the plain default
    (so ``Job.status`` is ``JobStatus.NOT_STARTED``, typed so)."""

    __slots__ = ("default", "legacy", "name", "read")

    def __init__(self, name: str, read: Callable[[str], T], default: T, legacy: str = "") -> None:
        self.name = name
        self.read = read
        self.default = default
        self.legacy = legacy


# The declarations below are typed as their values (as dataclasses.field is): a record's attribute is a T to the
# type checker, on the class (its default) and on a record alike. Readers are builtins where they can be (a
# record is read on every poll and delivery): str is kept as is.
def _declare(field: Field[T]) -> T:
    return cast(T, field)


def text(name: str, *, legacy: str = "") -> str:
    return _declare(Field(name, str, "", legacy))


def number(name: str, default: int = 0) -> int:
    return _declare(Field(name, int, default))


def decimal(name: str, default: float = 0.0) -> float:
    return _declare(Field(name, float, default))


def flag(name: str) -> bool:
    return _declare(Field(name, "1".__eq__, False))


def choice(name: str, enum: type[E], default: E) -> E:
    """A field holding an enum's value (read by a dict lookup: much cheaper than calling the enum)."""
    return _declare(Field(name, {member.value: member for member in enum}.__getitem__, default))


def stored_text(value: Any) -> str:
    """A field's value as the hash holds it: a flag '1' or absent (''), a float's repr, an enum's value."""
    if type(value) is int:  # the usual one (a bool is not)
        return str(value)
    if value is True:
        return "1"
    if value is False:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, StrEnum):
        return value.value
    return str(value)


@dataclass_transform(kw_only_default=True, eq_default=False)
class Stored:
    """A record of a Redis hash. Each record class declares its fields once (stored name, type, default).

    * Read: :meth:`from_hash` sets what the hash holds, converted, so reading a field is a plain attribute read
      (absent fields are the class's defaults; unknown ones are ignored, so a hash an older version wrote reads).
    * Written: a record made with keywords, ``Job(status=JobStatus.FAILED, error=...)``, is a change: the fields
      it names, nothing else (its ``fields`` are their stored texts, what the store writes). Setting an attribute
      of a change sets its stored text too. A misspelt field or a value of the wrong type fails the type check.
    * Named: :meth:`name_of` gives a field's stored name, checked too (``Job.name_of(lambda j: j.terminal)``).
    * Renamed: a field declared with ``legacy`` (the name earlier versions wrote) is written under its name (or,
      after :func:`write_legacy_names`, its legacy name) and read under either. Under both, the legacy name's value
      wins: this version deletes the other name whenever it writes a field (the scripts' ``job_set``;
      :meth:`merged`), so both are there only if an older process, which knows one name, wrote it later (a
      rolling upgrade).
    """

    id: str
    fields: dict[str, str]
    #: the stored names of the fields :meth:`from_hash_lenient` could not read (they read as their defaults)
    unreadable: ClassVar[tuple[str, ...]] = ()
    stored_names: ClassVar[frozenset[str]] = frozenset()
    #: attribute -> stored name
    attrs: ClassVar[dict[str, str]] = {}
    #: declared name -> the name earlier versions stored the field under (renamed fields only)
    legacy_names: ClassVar[dict[str, str]] = {}
    #: stored name -> the renamed field's other name, read too (the legacy name, or the declared one when the
    #: legacy names are written)
    other_names: ClassVar[dict[str, str]] = {}
    _declared: ClassVar[dict[str, Field[Any]]] = {}
    _readers: ClassVar[dict[str, tuple[str, Callable[[str], Any]]]] = {}
    _other_readers: ClassVar[dict[str, tuple[str, Callable[[str], Any]]]] = {}
    _others_win: ClassVar[bool] = True  # the other names are the legacy ones: there, they win
    _probe: ClassVar[Any] = None

    def __init__(self, **values: Any) -> None:
        """A change: these fields, the others absent (its id is '': the store knows whose it is)."""
        own = self.__dict__
        fields: dict[str, str] = {}
        own["id"] = ""
        own["fields"] = fields
        if values:  # (a loop, not a comprehension: made on every poll and registration, this is ~2x cheaper)
            attrs = self.attrs
            for attr, value in values.items():
                fields[attrs[attr]] = value if type(value) is str else stored_text(value)
            own.update(values)

    def __setattr__(self, attr: str, value: Any) -> None:
        own = self.__dict__
        own[attr] = value
        stored = self.attrs.get(attr)
        if stored is not None:
            own["fields"][stored] = value if type(value) is str else stored_text(value)

    @classmethod
    def from_hash(cls, key_id: str, fields: dict[str, str]) -> Self:
        """The record of a hash read from Redis (``key_id``: the id in its key); unknown fields are ignored."""
        record = cls.__new__(cls)
        own = record.__dict__
        own["id"] = key_id
        own["fields"] = fields
        readers = cls._readers
        other = False
        for name, raw in fields.items():
            reader = readers.get(name)
            if reader is None:
                other = other or name in cls._other_readers
            elif raw != "":
                attr, read = reader
                own[attr] = raw if read is str else read(raw)
        if other:  # a renamed field under its other name: the legacy name wins (see the class)
            for name, (attr, read) in cls._other_readers.items():
                if name in fields and (cls._others_win or cls.attrs[attr] not in fields):
                    own.pop(attr, None)
                    value = fields[name]
                    if value != "":
                        own[attr] = value if read is str else read(value)
        return record

    def as_stored(self, key_id: str, **values: Any) -> Self:
        """This change with ``values`` set, as the record :meth:`from_hash` reads once it is stored whole under
        ``key_id``: its fields, the same values, without converting them back from their texts (a registration
        answers with the job it stored: 0.9 µs by from_hash, 0.4 µs this way)."""
        record = self.__new__(type(self))
        own = record.__dict__
        own.update(self.__dict__)
        own["id"] = key_id
        fields = own["fields"] = dict(self.fields)
        attrs = self.attrs
        for attr, value in values.items():
            fields[attrs[attr]] = value if type(value) is str else stored_text(value)
        own.update(values)
        return record

    @classmethod
    def from_hash_lenient(cls, key_id: str, fields: dict[str, str]) -> Self:
        """:meth:`from_hash` for what the API shows: a field whose text does not read (a damaged or foreign value
        in Redis) is left out, so it reads as its default, and its stored name is in ``unreadable``."""
        try:
            return cls.from_hash(key_id, fields)
        except (ValueError, KeyError, TypeError):
            pass
        readable: dict[str, str] = {}
        unreadable: list[str] = []
        for name, raw in fields.items():
            reader = cls._readers.get(name) or cls._other_readers.get(name)
            if reader is not None and raw != "":
                try:
                    reader[1](raw)
                except (ValueError, KeyError, TypeError):
                    unreadable.append(name)
                    continue
            readable[name] = raw
        record = cls.from_hash(key_id, readable)
        record.__dict__["unreadable"] = tuple(unreadable)
        return record

    @classmethod
    def name_of(cls, pick: Callable[[Self], object]) -> str:
        """The stored name of the field ``pick`` reads: ``Monitor.name_of(lambda m: m.percentage)`` is 'pct'."""
        return str(pick(cls._probe))

    @classmethod
    def names_of(cls, pick: Callable[[Self], tuple[object, ...]]) -> list[str]:
        """The stored names of the fields ``pick`` reads, in its order."""
        return [str(name) for name in pick(cls._probe)]

    def merged(self, change: Self) -> Self:
        """A copy with ``change``'s fields set (a renamed field's other name gone, as the store writes it)."""
        fields = {**self.fields, **change.fields}
        if self.other_names:
            for name in change.fields:
                fields.pop(self.other_names.get(name, ""), None)
        return self.from_hash(self.id, fields)

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
        cls._declared = {attr: value for attr, value in vars(cls).items() if isinstance(value, Field)}
        cls.legacy_names = {field.name: field.legacy for field in cls._declared.values() if field.legacy}
        for attr, field in cls._declared.items():
            setattr(cls, attr, field.default)  # reads of an absent field find the default on the class
        cls._name_fields(legacy=False)

    @classmethod
    def _name_fields(cls, *, legacy: bool) -> None:
        """The stored names: each field's declared one, or (``legacy``) a renamed field's legacy one."""
        stored = {attr: (f.legacy if legacy and f.legacy else f.name) for attr, f in cls._declared.items()}
        other = {attr: (f.name if legacy else f.legacy) for attr, f in cls._declared.items() if f.legacy}
        cls.attrs = stored
        cls.stored_names = frozenset(stored.values())
        cls.other_names = {stored[attr]: name for attr, name in other.items()}
        cls._readers = {stored[attr]: (attr, f.read) for attr, f in cls._declared.items()}
        cls._other_readers = {name: (attr, cls._declared[attr].read) for attr, name in other.items()}
        cls._others_win = not legacy
        probe = cls.__new__(cls)  # each field's value is its stored name (name_of)
        probe.__dict__.update(stored)
        cls._probe = probe


class Job(Stored):
    """``relay:job:<id>``. The id is the key, not a field. Absent fields are defaults (bytes per job count: the
    four fields every job has stored under short names since 2026-12-07, 37 bytes less a job; earlier versions
    wrote the names given as ``legacy``, read still: docs/performance.md, "Memory")."""

    owner: str = text("owner")
    created: int = number("created")  # ms since the epoch, Redis clock
    callback_url: str = text("cb", legacy="callback_url")
    monitor_key: str = text("mk", legacy="monitor_key")
    monitor_host: str = text("host", legacy="monitor_host")
    drive_item_url: str = text("item", legacy="drive_item_url")
    authorization: str = text("authorization")  # sealed (relay/core/crypto.py)
    credential: str = text("credential")
    metadata: str = text("metadata")  # compact JSON
    secret: str = text("secret")
    progress_interval: float = decimal("progress_interval")
    sequence: int = number("seq")
    status: JobStatus = choice("status", JobStatus, JobStatus.NOT_STARTED)
    phase: Phase = choice("phase", Phase, Phase.TRACKING)
    percentage: float = decimal("percentage")
    operation: str = text("operation")
    monitor_status: str = text("monitor_status")
    status_description: str = text("status_description")
    resource_id: str = text("resource_id")
    drive_item: str = text("drive_item")  # JSON
    resolution_error: str = text("resolution_error")  # JSON
    error: str = text("error")  # JSON
    terminal: bool = flag("terminal")
    auth_asks: int = number("auth_asks")
    auth_wait_until: int = number("auth_wait_until")  # ms
    auth_error: str = text("auth_error")  # JSON: the refusal the job ends with if no usable authorization comes
    polls: int = number("polls")  # the monitor's, kept when the job ends (its monitor may be gone)
    last_polled: int = number("last_polled")


class Monitor(Stored):
    """``relay:monitor:<key>``: the URL (sealed), the poll state, and a field ``j:<job id>`` per job sharing it."""

    url: str = text("url")
    lane: str = text("lane")  # its lane of the monitors schedule: its first job's tenant ('' the default lane)
    #: how many jobs share it, stored once it has had more than one (relay/store/lua/lib/monitors.lua)
    jobs: int = number("jobs")
    status: str = text("status")  # the monitor's own last status word
    percentage: float = decimal("pct")
    status_description: str = text("desc")
    operation: str = text("operation")
    polls: int = number("polls")
    last_polled: int = number("last_polled")
    streak: int = number("streak")  # polls in a row that brought nothing new
    invalid: int = number("invalid")  # answers in a row that were not AsyncJobStatus
    errors: int = number("errors")  # transient errors in a row
    completed: bool = flag("completed")
    resource_id: str = text("resource_id")
    drive_item: str = text("drive_item")
    base_ms: int = number("base_ms")  # the baseline of the progress rate (relay/core/tracking.py); 0: none yet
    base_percentage: float = decimal("base_pct")
    server_errors_since: int = number("e5")  # relay/core/stretches.py
    unknown_status_since: int = number("uk")
    not_before: int = number("nb")  # ms: the end of the last answer's Retry-After (a job joining waits for it too)
    #: a poll whose jobs are written a chunk at a time: its answer (relay/core/tracking.py Outcome) until the last
    outcome: str = text("outcome")


class Event(Stored):
    """``relay:event:<id>``: one event, its body serialised once (every attempt sends the same bytes)."""

    job: str = text("job")
    type: str = text("type")
    sequence: int = number("seq")
    body: str = text("body")
    attempts: int = number("attempts")  # every attempt made, redeliveries included
    schedule_from: int = number("schedule_from")  # attempts made before the last redelivery started the schedule again
    state: EventState = choice("state", EventState, EventState.PENDING)
    created: int = number("created")  # ms


class Migrations(Stored):
    """``relay:migrations``: how far moving what earlier versions stored into today's layout has come."""

    #: dead letters up to this score (ms) are in their owners' indexes (migrate_indexes.lua)
    dead: float = decimal("dead")


class Stats(Stored):
    """``relay:stats``: lifetime counters (a job's end counts under its status)."""

    registered: int = number("registered")
    completed: int = number("completed")
    failed: int = number("failed")
    cancelled: int = number("cancelled")
    ended: int = number("ended")  # a job that ended without a status (written by no version today)
    dead_dropped: int = number("dead_dropped")  # dead letters dropped, the oldest, over RELAY_DEAD_LETTERS_MAX


#: a monitor's hash holds a field ``j:<job id>`` (empty) per job sharing it, beside its own (relay/store/lua)
MONITOR_JOB_PREFIX = "j:"

#: what the Lua scripts get as tables of stored names: ``JOB.sequence`` is 'seq' (relay/store/scripts.py)
LUA_RECORDS: dict[str, type[Stored]] = {
    "JOB": Job,
    "MONITOR": Monitor,
    "EVENT": Event,
    "MIGRATIONS": Migrations,
    "STATS": Stats,
}
#: and as tables of values: ``EVENT_STATE.DELIVERED`` is 'delivered'
LUA_ENUMS: dict[str, type[StrEnum]] = {
    "JOB_STATUS": JobStatus,
    "PHASE": Phase,
    "EVENT_STATE": EventState,
    "OUTCOME": DeliveryOutcome,
}


_legacy_written = False


def write_legacy_names(on: bool) -> None:
    """Write (``on``) the renamed fields under the names earlier versions wrote, and read the declared ones too; or
    (off, the default) the other way round. Called once, at a process's start (``RELAY_STORE_LEGACY_FORMAT``), before
    a record is made or a script composed: the scripts' prelude is generated from the names chosen here."""
    global _legacy_written
    _legacy_written = on
    for record in LUA_RECORDS.values():
        record._name_fields(legacy=on)


def writes_legacy_names() -> bool:
    """Whether this process writes the renamed fields under their legacy names (:func:`write_legacy_names`)."""
    return _legacy_written
