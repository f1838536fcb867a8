"""Every Redis key relay uses, in one place: the Python functions below, and the Lua scripts' key functions
and constants, which :mod:`relay.store.scripts` generates from them (``KEY_MONITORS``, ``key_job(id)``...).

All keys share the ``relay:`` prefix so a Redis shared with other software stays readable.
"""

from __future__ import annotations

import hashlib
import secrets

from relay.store.tags import BUCKETS, TAGS

__all__ = [
    "ACTIVE",
    "ANCHOR",
    "ARQ_QUEUE",
    "DEAD_LETTERS",
    "DELIVERIES",
    "JOBS_INDEX",
    "MIGRATIONS",
    "MONITORS",
    "PREFIX",
    "READY_PROBE",
    "STATS",
    "Keyspace",
    "event",
    "idempotency",
    "job",
    "job_attempts",
    "job_events",
    "job_outbox",
    "monitor",
    "owner_dead_letters",
    "owner_jobs",
    "registrations",
    "sched_lane",
    "sched_lanes",
    "sched_tokens",
    "sched_wake",
]

PREFIX = "relay:"

#: sorted set of monitor keys scored by the next poll's due time (ms since epoch, Redis clock): the default
#: lane of the monitors schedule; each API tenant's monitors are in a lane of their own (see sched_lane)
MONITORS = f"{PREFIX}sched:monitors"
#: sorted set of job ids with undelivered events, scored by the next delivery attempt (ms); a job whose
#: terminal event is ready is scored a day early (store/lua/lib/job_op.lua TERMINAL_FIRST_MS): under a
#: backlog, completions go out before progress (which a later event would supersede anyway). Lanes as monitors
DELIVERIES = f"{PREFIX}sched:deliveries"
#: sorted set of dead-lettered event ids, scored by when they died (ms): every owner's, for their count
#: (``relay_dead_letters``); each owner's are listed from its own (owner_dead_letters). Both lose those whose event
#: has expired, and the oldest beyond RELAY_DEAD_LETTERS_MAX, when a dead letter is added (delivery_ack.lua)
DEAD_LETTERS = f"{PREFIX}dead"
#: hash of lifetime counters: registered, completed, failed, cancelled
STATS = f"{PREFIX}stats"
#: hash of each owner's (API tenant's) active jobs: registered and not yet ended (RELAY_TENANT_MAX_ACTIVE_JOBS)
ACTIVE = f"{PREFIX}active"
#: the anchor of a bucket (its tag after ``relay:``): every script declares it as ``KEYS[1]``, and its Lua key
#: functions take their tag from it (docs/cluster-design.md, "Resharding: the anchor key"). Never deleted; named
#: to sort after every other key of its bucket (``~`` after every letter), so that a slot's keys move before it
ANCHOR = f"{PREFIX}~"
#: a string /readyz writes (expiring in seconds) to learn whether Redis accepts writes
READY_PROBE = f"{PREFIX}readyz"
#: the arq queue that runs DriveItem resolution
ARQ_QUEUE = f"{PREFIX}arq:queue"
#: the stream of every owner's job ids that versions before per-owner indexes wrote (owner_jobs): what it still
#: holds is moved into the owners' indexes, under the same entry ids, when an API process first lists
JOBS_INDEX = f"{PREFIX}jobs"
#: hash of how far moving the shared indexes into per-owner ones has come: ``dead``, the dead letters' score
MIGRATIONS = f"{PREFIX}migrations"


def sched_tokens(schedule: str) -> str:
    """Hash member -> claim token of the worker currently holding the member's lease."""
    return f"{schedule}:tokens"


def sched_lane(schedule: str, lane: str) -> str:
    """A tenant's own due-time sorted set of a schedule (the default lane is the schedule's key itself)."""
    return f"{schedule}:lane:{lane}"


def sched_lanes(schedule: str) -> str:
    """Sorted set of a schedule's lanes, scored by each lane's earliest due member."""
    return f"{schedule}:lanes"


def sched_wake(schedule: str) -> str:
    """Pub/sub channel: a member now comes due before any other did (idle workers sleep until woken or due)."""
    return f"{schedule}:wake"


def job(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def job_events(job_id: str) -> str:
    """List of every event id of the job, in sequence order."""
    return f"{PREFIX}job:{job_id}:events"


def job_outbox(job_id: str) -> str:
    """List of event ids still to be delivered, in sequence order."""
    return f"{PREFIX}job:{job_id}:outbox"


def job_attempts(job_id: str) -> str:
    """List of JSON delivery-attempt records, oldest first."""
    return f"{PREFIX}job:{job_id}:attempts"


def event(event_id: str) -> str:
    return f"{PREFIX}event:{event_id}"


def monitor(monitor_key: str) -> str:
    """The monitor's URL and poll state, and one field ``j:<job id>`` per job sharing it (lua/lib/monitors.lua)."""
    return f"{PREFIX}monitor:{monitor_key}"


def strikes(kind: str, member: str) -> str:
    """Counter of a poll's, delivery's or resolution's unexpected failures in a row (workers/backstop.py); it
    expires a day after the last one."""
    return f"{PREFIX}strikes:{kind}:{member}"


def owner_jobs(owner: str) -> str:
    """Stream of an owner's job ids (field ``j``) in creation order, for ``GET /v1/jobs`` and ``/v1/stream``: its
    entry ids are creation times, hence the listing's cursors; entries past the longest a job can live are trimmed.
    """
    return f"{PREFIX}jobs:{owner}"


def owner_dead_letters(owner: str) -> str:
    """Sorted set of an owner's dead-lettered event ids, scored by when they died (ms); expired ones are trimmed, and
    the oldest beyond RELAY_DEAD_LETTERS_MAX."""
    return f"{PREFIX}dead:{owner}"


def registrations(owner: str, second: str) -> str:
    """Counter of an owner's registrations in one second (RELAY_TENANT_REGISTRATIONS_PER_SECOND); lives 2 s."""
    return f"{PREFIX}rate:{owner}:{second}"


def admitted(job_id: str) -> str:
    """A cluster's mark that admit.lua did a registration's owner part (in the owner's bucket): a run sent again
    (its answer lost with a connection) does not list the job twice; lives as long as a pending Idempotency-Key
    (RETRY_FOR, the time a call is sent again for)."""
    return f"{PREFIX}admitted:{job_id}"


def idempotency(owner: str, key_digest: str) -> str:
    return f"{PREFIX}idem:{owner}:{key_digest}"


#: what the Lua scripts get as constants (``KEY_<name>``) and functions (``key_<name>(...)``)
LUA_CONSTANTS = {
    "MONITORS": MONITORS,
    "DELIVERIES": DELIVERIES,
    "DEAD_LETTERS": DEAD_LETTERS,
    "STATS": STATS,
    "JOBS_INDEX": JOBS_INDEX,
    "ACTIVE": ACTIVE,
    "MIGRATIONS": MIGRATIONS,
}
LUA_FUNCTIONS = (
    sched_tokens,
    sched_lane,
    sched_lanes,
    sched_wake,
    job,
    job_events,
    job_outbox,
    job_attempts,
    event,
    monitor,
    registrations,
    admitted,
    owner_jobs,
    owner_dead_letters,
)


class Keyspace:
    """Where each key lives: one bucket on a standalone or Sentinel Redis (``buckets=1``: every key exactly as the
    functions above name it), or :data:`relay.store.tags.BUCKETS` buckets on a Redis Cluster, each key of bucket
    ``b`` written ``relay:{<TAGS[b]>}:...`` (docs/cluster-design.md, "Buckets and hash tags").

    A monitor's bucket is a digest of its key (every job sharing it is in it); a job's id carries its bucket (its
    first two hex digits); an event is in its job's bucket; an owner's own keys (its listing index, idempotency
    keys, registration counters) are in the bucket of a digest of the owner. What a test or a tool needs to find a
    job's keys from its id: :meth:`job`, :meth:`job_events`... and :meth:`bucket_of_job`.
    """

    __slots__ = ("_prefixes", "buckets")

    def __init__(self, buckets: int = 1) -> None:
        if not 1 <= buckets <= len(TAGS):
            raise ValueError(f"buckets: 1 to {len(TAGS)}")
        self.buckets = buckets
        self._prefixes = (PREFIX,) if buckets == 1 else tuple(f"{PREFIX}{{{TAGS[b]}}}:" for b in range(buckets))

    @classmethod
    def cluster(cls) -> Keyspace:
        return cls(BUCKETS)

    @property
    def clustered(self) -> bool:
        return self.buckets > 1

    # -- buckets -------------------------------------------------------------------------------

    def bucket_of(self, name: str) -> int:
        """The bucket of a monitor key or an owner: the first 4 bytes of its SHA-256, modulo the buckets."""
        if self.buckets == 1:
            return 0
        return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % self.buckets

    def bucket_of_job(self, job_id: str) -> int:
        """The bucket a job id carries (its first two hex digits); 0 with one bucket (and for a malformed id)."""
        if self.buckets == 1:
            return 0
        try:
            return int(job_id[:2], 16) % self.buckets
        except ValueError:
            return 0

    def job_id_in(self, job_id: str, bucket: int) -> str:
        """``job_id`` made to carry ``bucket`` (unchanged with one bucket)."""
        return job_id if self.buckets == 1 else f"{bucket:02x}{job_id[2:]}"

    def new_job_id(self, monitor_key: str = "") -> str:
        """A new job id: 32 hex digits, in its monitor's bucket (a random one without a monitor)."""
        job_id = secrets.token_hex(16)
        return self.job_id_in(job_id, self.bucket_of(monitor_key)) if monitor_key else job_id

    def prefix(self, bucket: int) -> str:
        """``relay:`` or ``relay:{<tag>}:``."""
        return self._prefixes[bucket]

    def anchor(self, bucket: int) -> str:
        """The bucket's anchor, every script's ``KEYS[1]`` (``relay:~`` with one bucket)."""
        return self._prefixes[bucket] + "~"

    def in_bucket(self, key: str, bucket: int) -> str:
        """One of the names above (``relay:...``) as it is in ``bucket``."""
        return key if self.buckets == 1 else self._prefixes[bucket] + key[len(PREFIX) :]

    def every(self, key: str) -> list[str]:
        """A per-bucket key (``STATS``, ``DEAD_LETTERS``, a schedule...) in every bucket, in bucket order."""
        return [self.in_bucket(key, b) for b in range(self.buckets)]

    # -- a job's keys, from its id ---------------------------------------------------------------

    def job(self, job_id: str) -> str:
        return self.in_bucket(job(job_id), self.bucket_of_job(job_id))

    def job_events(self, job_id: str) -> str:
        return self.in_bucket(job_events(job_id), self.bucket_of_job(job_id))

    def job_outbox(self, job_id: str) -> str:
        return self.in_bucket(job_outbox(job_id), self.bucket_of_job(job_id))

    def job_attempts(self, job_id: str) -> str:
        return self.in_bucket(job_attempts(job_id), self.bucket_of_job(job_id))

    def event(self, event_id: str, job_id: str) -> str:
        """An event's hash: in its job's bucket."""
        return self.in_bucket(event(event_id), self.bucket_of_job(job_id))

    def monitor(self, monitor_key: str) -> str:
        return self.in_bucket(monitor(monitor_key), self.bucket_of(monitor_key))

    # -- an owner's keys, in the owner's bucket ----------------------------------------------------

    def owner_jobs(self, owner: str) -> str:
        return self.in_bucket(owner_jobs(owner), self.bucket_of(owner))

    def idempotency(self, owner: str, key_digest: str) -> str:
        return self.in_bucket(idempotency(owner, key_digest), self.bucket_of(owner))

    def owner_dead_letters(self, owner: str, bucket: int) -> str:
        """An owner's dead letters of one bucket (written by the bucket's delivery acks)."""
        return self.in_bucket(owner_dead_letters(owner), bucket)


#: the keyspace of a standalone or Sentinel Redis
SINGLE = Keyspace(1)
