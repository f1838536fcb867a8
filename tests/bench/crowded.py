"""Section 10: one monitor shared by 10,000 jobs (``--crowded-jobs``): from the copy's end to the last job's
``job.completed``, and the longest Redis script meanwhile (SLOWLOG), which is also how long Redis did nothing
else for any other tenant.

The jobs are registered (through :meth:`Store.register`, what ``POST /v1/jobs`` writes) before the worker
starts, on one simulated copy that ends 20 s later; each job fetches its DriveItem. SLOWLOG records every
command of at least 0.5 ms from the worker's start to the last ``job.completed``.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

from relay.store.scripts import lua_prelude
from tests.bench import peers
from tests.bench.harness import Harness
from tests.bench.measure import Meter, pct
from tests.bench.report import code_root

__all__ = ["run"]

_SLOWER_THAN_US = 500
#: the scripts that read or write a monitor's jobs when it is polled; beside them, the longest of the others (one
#: job's resolution, deliveries) shows what the machine does to a script whatever it holds: SLOWLOG times are wall
#: times, and on a busy machine Redis waits for a core in the middle of a script
_POLL_SCRIPTS = frozenset({"claim_monitors.lua", "apply_poll.lua", "poll_chunk.lua"})
_DURATION = 20.0


async def run(h: Harness) -> None:
    n: int = h.args.crowded_jobs
    sim_proc, sim = h.spawn_server("sim")
    rec_proc, receiver = h.spawn_server("receiver")
    worker = None
    try:
        await h.fresh_redis()
        (op,) = await peers.sim_create(h.http, sim, [{"duration": _DURATION}], record=True)
        memory_before = await _used_memory(h)
        started = time.monotonic()
        specs = []
        for _ in range(n):
            jid = uuid.uuid4().hex
            fields = peers.sim_job_fields(h.vault, sim, receiver)
            specs.append((jid, fields, op["monitorUrl"]))
        await peers.register(h.store, specs)
        per_job = (await _used_memory(h) - memory_before) / n
        h.say(f"{n:,} jobs registered on one monitor in {time.monotonic() - started:.1f} s ({per_job:,.0f} B each)")
        await h.redis.config_set("slowlog-log-slower-than", _SLOWER_THAN_US)
        await h.redis.config_set("slowlog-max-len", 100_000)
        await h.redis.slowlog_reset()
        worker = await h.start_worker(h.relay_env(RELAY_POLL_INITIAL_INTERVAL=1, RELAY_POLL_MAX_INTERVAL=60))
        meter = h.meter(worker=worker.pid)
        c0 = meter.sample()

        async def all_completed() -> bool:
            return await peers.received_count(h.http, receiver) >= n and len(await _completed(h, receiver)) >= n

        done = await h.wait_until(all_completed, _DURATION + 600, 1.0)
        window = Meter.between(c0, meter.sample())
        slow = await h.redis.slowlog_get(100_000)
        memory_end = (await _used_memory(h) - memory_before) / n
        completed = await _completed(h, receiver)
        sim_op = (await peers.sim_polls(h.http, sim, [op["id"]]))["ops"][op["id"]]
    finally:
        await h.redis.config_set("slowlog-log-slower-than", 10_000)
        await h.redis.slowlog_reset()
        h.stop(worker, sim_proc, rec_proc)
    end = op["created"] + _DURATION
    names = _script_names(code_root(h.args.relay_bin))
    scripts = sorted((entry["duration"], _name(entry, names)) for entry in slow if _is_script(entry))
    longest_us, longest = scripts[-1] if scripts else (0, f"none of {_SLOWER_THAN_US} us or more")
    polls = [(us, name) for us, name in scripts if name in _POLL_SCRIPTS]
    others = [(us, name) for us, name in scripts if name not in _POLL_SCRIPTS]
    poll_us, poll_name = polls[-1] if polls else (0, "none")
    other_us, other_name = others[-1] if others else (0, "none")
    over_1ms = sum(1 for us, _ in scripts if us >= 1000)
    over_5ms = sum(1 for us, _ in scripts if us >= 5000)
    lags = [t - end for t in completed]
    by_name: dict[str, list[int]] = {}
    for us, name in scripts:
        by_name.setdefault(name, []).append(us)
    per_script = "; ".join(
        f"{name} {len(found):,} (p50 {pct([us / 1000 for us in found], 0.5):.1f}, max {max(found) / 1000:.1f} ms)"
        for name, found in sorted(by_name.items(), key=lambda kv: -max(kv[1]))
    )
    h.say(window.text())
    h.note(
        f"crowded: {len(completed):,} of {n:,} job.completed; copy's end -> first {min(lags or [0]):.1f} s, "
        f"median {pct(lags or [0.0], 0.5):.1f} s, last {max(lags or [0]):.1f} s; {sim_op['polls']} monitor polls; "
        f"scripts of 1 ms or more: {over_1ms:,}, of 5 ms or more: {over_5ms:,}; longest {longest_us / 1000:.1f} ms "
        f"({longest}); Redis {window.share('redis'):.0%} of a core, worker {window.share('worker'):.0%}; "
        f"Redis memory per job {per_job:,.0f} B registered, {memory_end:,.0f} B at the end (events kept); scripts "
        f"of {_SLOWER_THAN_US} us or more, by script: {per_script or 'none'}"
    )
    if not done:
        h.note(f"crowded: only {len(completed):,} of {n:,} job.completed within {_DURATION + 600:.0f} s")
    h.add(
        f"10 crowded monitor: {n:,} jobs on one, copy's end -> last job.completed",
        f"{max(lags):.1f} s" if lags else "no data",
        "",
        None,
        "info",
        done,
    )
    h.add(
        "10 crowded monitor: longest script of its polls vs of anything else (SLOWLOG)",
        f"{poll_us / 1000:.1f} ms ({poll_name})",
        f"{other_us / 1000:.1f} ms ({other_name})",
        None,
        "<= 10 ms (a few)",
        done and poll_us <= 10_000,
    )


async def _used_memory(h: Harness) -> int:
    return int((await h.redis.info("memory"))["used_memory"])


async def _completed(h: Harness, receiver: str) -> list[float]:
    """When each job's first job.completed arrived."""
    first: dict[str, float] = {}
    for at, _, job_id, _ in await peers.received(h.http, receiver, "c"):
        first.setdefault(job_id, at)
    return list(first.values())


def _is_script(entry: dict[str, Any]) -> bool:
    command = entry["command"]
    return isinstance(command, bytes) and command.startswith((b"EVALSHA", b"EVAL "))


def _name(entry: dict[str, Any], names: dict[str, str]) -> str:
    parts = entry["command"].split(b" ")
    sha = parts[1].decode(errors="replace") if len(parts) > 1 else ""
    return names.get(sha, f"script {sha[:8]}")


def _script_names(root: Path) -> dict[str, str]:
    """SHA1 -> name of every script of the checkout under test, composed as relay/store/scripts.py does (keys.py,
    whence the prelude, is this checkout's: the key names did not change)."""
    lua = root / "relay" / "store" / "lua"
    out: dict[str, str] = {}
    for path in lua.glob("*.lua"):
        libraries: list[str] = []
        _ordered(lua, path.read_text(), libraries)
        parts = [lua_prelude(), *(f"-- {lib}\n{(lua / lib).read_text()}" for lib in libraries)]
        parts.append(f"-- {path.name}\n{path.read_text()}")
        text = "\n".join(parts)
        out[hashlib.sha1(text.encode()).hexdigest()] = path.name  # noqa: S324 - the name Redis gives a script
    return out


def _ordered(lua: Path, source: str, seen: list[str]) -> None:
    first = source.split("\n", 1)[0]
    for dependency in first[len("--! uses ") :].split() if first.startswith("--! uses ") else []:
        if dependency not in seen:
            _ordered(lua, (lua / dependency).read_text(), seen)
            seen.append(dependency)
