"""The Lua scripts, as real files (``relay/store/lua/*.lua``), composed and loaded into Redis.

A script names the library files it uses on a first line ``--! uses lib/a.lua lib/b.lua`` (libraries may use
others; each is included once, dependencies first). Before all of them comes a prelude generated from
:mod:`relay.store.keys` and :mod:`relay.core.schema`, so key names, hash field names and state words are written
once, in Python: ``KEY_MONITORS``, ``key_job(id)``, ``JOB.sequence`` ('seq'), ``EVENT_STATE.DELIVERED``...
A name the schema does not declare fails the script that uses it (``relay: no JOB.sqe``), not silently nil.
``JOB_RENAMED`` maps the stored name of a renamed field to its two names, the one earlier versions wrote first
(``JOB_RENAMED.cb`` is {'callback_url', 'cb'}; nil for the others): scripts read and write a job's fields through
lib/job_fields.lua. The names are the schema's when the script is composed (:func:`relay.core.schema.write_legacy_names`
changes them: a process writing the legacy names runs scripts of another text, so another SHA, on the same Redis).
Nothing is substituted into a script's text.

One calling convention for every script: it takes one named record, ``ARGV[1]`` as JSON (``local call =
cjson.decode(ARGV[1])``: ``call.job_id``...), and answers one named record, JSON too (``return cjson.encode({found =
true})``): no positional arguments, no reply slots. A batched script (:mod:`relay.store.batched`) takes the record
its calls share and one record per call, and answers one record per call. A script's JSON answer is what relay's own
Lua wrote, read by orjson; what goes in is :func:`encode_call`'s JSON. Redis' cjson refuses the escape of a lone
surrogate (``\ud800``), which Python's JSON writes: text that may carry one from a caller (metadata, an error) is
kept as JSON text already, and one that comes from elsewhere (a monitor's status description) has it replaced by
U+FFFD, so that such a text cannot fail a write again and again.

Every script atomically changes (or reads) several keys; it derives them from ids, each in the bucket whose anchor it
declares as ``KEYS[1]`` (:class:`relay.store.keys.Keyspace`): every key it touches carries that bucket's hash tag on
a Redis Cluster, and none on a standalone or Sentinel Redis (keys exactly as :mod:`relay.store.keys` names them).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from relay.core.schema import LUA_ENUMS, LUA_RECORDS, MONITOR_JOB_PREFIX, Stored, writes_legacy_names
from relay.store import keys
from relay.store.keys import ANCHOR

__all__ = ["LUA_DIR", "LuaScript", "compose", "compose_source", "encode_call", "lua_prelude", "run_many"]

LUA_DIR = Path(__file__).parent / "lua"
_RENAMED = "_RENAMED"  # a record's table of its renamed fields' names: JOB_RENAMED
_TABLES = (*LUA_RECORDS, *(t + _RENAMED for t, r in LUA_RECORDS.items() if r.legacy_names), *LUA_ENUMS)
_USES = "--! uses "
_MARK = "\x00"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encode_call(call: Any) -> bytes:
    """A script's call record as JSON that Redis' cjson reads: orjson's, or (where orjson refuses: a lone
    surrogate, an integer over 64 bits) the stdlib's, a lone surrogate replaced by U+FFFD."""
    try:
        return orjson.dumps(call)
    except TypeError:  # orjson.JSONEncodeError
        text = json.dumps(call, separators=(",", ":"), ensure_ascii=False, default=_fields_of)
        return _LONE_SURROGATE.sub("\ufffd", text).encode()


def _fields_of(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"not JSON: {type(value).__name__}")


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def lua_prelude(tables: frozenset[str] | None = None) -> str:
    """Lua constants and functions for every key relay uses, generated from :mod:`relay.store.keys`; and the
    tables of field names and state words of :mod:`relay.core.schema` (those in ``tables``; None: all of them:
    a script builds only those it uses, at each run), with the stored names the schema has now."""
    return _prelude(tables, writes_legacy_names())


@functools.cache
def _prelude(tables: frozenset[str] | None, legacy: bool) -> str:
    # legacy: in the cache's key only (the names are the schema's, which write_legacy_names chose)
    lines = [
        "-- generated from relay/store/keys.py: key names are written there, once. Every key carries the tag of the",
        "-- bucket whose anchor is KEYS[1] ('relay:~': none; 'relay:{<tag>}:~' on a cluster: '{<tag>}:'), so that",
        "-- every key a script touches is in its bucket; a cluster's anchor is written before any other key of it",
        f"local TAG = string.sub(KEYS[1], {len(keys.PREFIX) + 1}, -2)",
        "if TAG ~= '' and redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], '') end",
    ]
    for name, value in keys.LUA_CONSTANTS.items():
        lines.append(f"local KEY_{name} = {_tagged(value)}")
    for function in keys.LUA_FUNCTIONS:
        if function is keys.sched_wake:
            continue  # below
        params = list(inspect.signature(function).parameters)
        rendered = function(*(f"{_MARK}{i}{_MARK}" for i in range(len(params))))
        parts = []
        for i, piece in enumerate(rendered.split(_MARK)):
            if i % 2:  # a parameter's place
                parts.append(params[int(piece)])
            elif piece:
                parts.append(_tagged(piece))
        lines.append(f"local function key_{function.__name__}({', '.join(params)}) return {' .. '.join(parts)} end")
    # a wake channel has no slot: every bucket's schedule publishes on the one its workers subscribe to
    lines.append(
        "local function key_sched_wake(schedule) return "
        f"{_lua_string(keys.PREFIX)} .. string.sub(schedule, {len(keys.PREFIX) + 1} + #TAG) .. ':wake' end"
    )
    lines.append("-- generated from relay/core/schema.py: hash field names and state words are written there, once")
    lines.append(
        "local function relay_names(what, names) return setmetatable(names, {__index = function(_, name) "
        "error('relay: no ' .. what .. '.' .. tostring(name), 2) end}) end"
    )
    for table, record in LUA_RECORDS.items():
        if tables is None or table in tables:
            lines.append(_lua_table(table, record.attrs))
        if record.legacy_names and (tables is None or table + _RENAMED in tables):
            entries = ", ".join(
                f"[{_lua_string(stored)}] = {{{', '.join(_lua_string(n) for n in _legacy_first(record, stored))}}}"
                for stored in record.other_names
            )
            lines.append(f"local {table}{_RENAMED} = {{{entries}}}  -- stored name -> both names, the legacy one first")
    for table, enum in LUA_ENUMS.items():
        if tables is None or table in tables:
            lines.append(_lua_table(table, {member.name: member.value for member in enum}))
    lines.append(f"local MONITOR_JOB = {_lua_string(MONITOR_JOB_PREFIX)}  -- a monitor's field per job: 'j:<job id>'")
    return "\n".join(lines) + "\n"


def _legacy_first(record: type[Stored], stored: str) -> tuple[str, str]:
    other = record.other_names[stored]
    return (other, stored) if other in record.legacy_names.values() else (stored, other)


def _tagged(text: str) -> str:
    """A piece of a key name as Lua: one starting ``relay:`` gets the bucket's tag after it."""
    if text.startswith(keys.PREFIX):
        rest = text[len(keys.PREFIX) :]
        return f"{_lua_string(keys.PREFIX)} .. TAG" + (f" .. {_lua_string(rest)}" if rest else "")
    return _lua_string(text)


def _lua_table(name: str, names: dict[str, str]) -> str:
    entries = ", ".join(f"{attr} = {_lua_string(value)}" for attr, value in names.items())
    return f"local {name} = relay_names('{name}', {{{entries}}})"


def _uses(source: str) -> list[str]:
    first = source.split("\n", 1)[0]
    return first[len(_USES) :].split() if first.startswith(_USES) else []


def _ordered(source: str, seen: list[str]) -> None:
    for dependency in _uses(source):
        if dependency not in seen:
            _ordered((LUA_DIR / dependency).read_text(), seen)
            seen.append(dependency)


def compose_source(name: str, source: str) -> str:
    """The full text Redis runs for a script's ``source``: the prelude, the libraries it uses, the script."""
    libraries: list[str] = []
    _ordered(source, libraries)
    parts = [f"-- {lib}\n{(LUA_DIR / lib).read_text()}" for lib in libraries]
    parts.append(f"-- {name}\n{source}")
    body = "\n".join(parts)
    used = frozenset(table for table in _TABLES if re.search(rf"\b{table}\b", body))
    return lua_prelude(used) + "\n" + body


def compose(name: str) -> str:
    """The full text Redis runs for script ``name`` (e.g. ``register.lua``), with the schema's stored names now."""
    return _composed(name, writes_legacy_names())


@functools.cache
def _composed(name: str, legacy: bool) -> str:
    # legacy: in the cache's key only, as for _prelude
    return compose_source(name, (LUA_DIR / name).read_text())


@dataclass(frozen=True)
class LuaScript:
    """One script, loaded by its SHA1 and loaded again when Redis has forgotten it (after a restart)."""

    name: str
    text: str
    sha: str

    @classmethod
    def load(cls, name: str) -> LuaScript:
        """The script ``relay/store/lua/<name>``."""
        return cls.from_text(name, compose(name))

    @classmethod
    def from_source(cls, name: str, source: str) -> LuaScript:
        """A script given as source (its ``--! uses`` line names library files, as in relay/store/lua)."""
        return cls.from_text(name, compose_source(name, source))

    @classmethod
    def from_text(cls, name: str, text: str) -> LuaScript:
        return cls(name, text, hashlib.sha1(text.encode()).hexdigest())  # noqa: S324 - the name Redis gives a script

    async def __call__(self, redis: Redis, call: Any = None, *, anchor: str = ANCHOR) -> Any:
        """Run the script on its one named record ``call`` (a dataclass or a dict; None: none) in the bucket whose
        ``anchor`` it declares (:meth:`relay.store.keys.Keyspace.anchor`), and read its named answer."""
        raw = await self.run(redis, [anchor], [encode_call(call)] if call is not None else None)
        return orjson.loads(raw)

    async def run(self, redis: Redis, keys: list[str] | None = None, args: list[Any] | None = None) -> Any:
        """Run it with these KEYS and ARGV, its answer as Redis gives it (probes, benchmarks' floors). relay's own
        scripts declare their bucket's anchor as ``KEYS[1]`` (their key names take its tag): without ``keys``, one
        Redis's (``relay:~``)."""
        declared = [ANCHOR] if keys is None else keys
        argv = [*declared, *(args or ())]
        try:
            return await redis.evalsha(self.sha, len(declared), *argv)  # type: ignore[misc]
        except NoScriptError:
            await redis.script_load(self.text)
            return await redis.evalsha(self.sha, len(declared), *argv)  # type: ignore[misc]


async def run_many(redis: Redis, script: LuaScript, runs: list[tuple[str, list[Any]]]) -> list[Any]:
    """Run ``script`` once per ``(anchor, args)`` in one pipeline (on a cluster: one round trip per node, each run
    sent to its anchor's node); each run's answer as Redis gives it, or its error as a value (never raised: the
    caller decides per run). A Redis that had forgotten the script loads it and those runs go again."""
    results = await _pipelined(redis, script, runs)
    again = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if again:
        await redis.script_load(script.text)
        for i, result in zip(again, await _pipelined(redis, script, [runs[i] for i in again]), strict=True):
            results[i] = result
    return results


async def _pipelined(redis: Redis, script: LuaScript, runs: list[tuple[str, list[Any]]]) -> list[Any]:
    async with redis.pipeline(transaction=False) as pipe:
        for anchor, args in runs:
            # by command name: a cluster pipeline refuses pipe.evalsha (docs/cluster-design.md)
            pipe.execute_command("EVALSHA", script.sha, 1, anchor, *args)
        # errors come back as values: raise_on_error would annotate them with every argument (monitor URLs)
        results: list[Any] = await pipe.execute(raise_on_error=False)
    return results
