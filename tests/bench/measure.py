"""Measuring: CPU time of processes (from /proc), resident memory, Redis command counts, and per-operation costs.

A :class:`Meter` samples the CPU seconds of named processes (relay's, Redis', the simulator's, a load
generator's...) and of the whole machine at two instants; ``per_op`` turns the difference into CPU
microseconds per operation for each process, so every cost comes from the same window as the rate
it sits beside.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

__all__ = [
    "CLK_TCK",
    "Meter",
    "Sample",
    "cpu_and_wait",
    "cpu_seconds",
    "event_loop_of",
    "machine_jiffies",
    "pct",
    "redis_calls",
    "rss_mib",
    "steady_rate",
    "wait_seconds",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1))]


def steady_rate(times: list[float]) -> float:
    """Arrivals per second over the middle 90% of the arrivals (ramp-up and tail left out)."""
    ordered = sorted(times)
    if len(ordered) < 20:
        return 0.0
    lo, hi = int(len(ordered) * 0.05), int(len(ordered) * 0.95)
    span = ordered[hi] - ordered[lo]
    return (hi - lo) / span if span > 0 else 0.0


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far; 0 when it is gone.

    The sum of its threads' ``schedstat`` run times (nanoseconds) where the kernel has them, else
    ``utime + stime`` from ``stat`` (clock ticks, which include threads that have exited): the idle
    figures need the finer one, a few milliseconds over half a minute.
    """
    return cpu_and_wait(pid)[0]


def wait_seconds(pid: int) -> float:
    """Seconds a process's threads have spent runnable but waiting for a CPU (``schedstat``'s second field):
    on a machine whose cores are all taken, what a busy process lost to the others; 0 without schedstat."""
    return _schedstat(pid)[1] / 1e9


def cpu_and_wait(pid: int) -> tuple[float, float]:
    """:func:`cpu_seconds` and :func:`wait_seconds` from one read of the process's threads."""
    run_ns, wait_ns, _ = _schedstat(pid)
    if run_ns:
        return run_ns / 1e9, wait_ns / 1e9
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, 0.0


def wakeups(pid: int) -> int:
    """Times a process's threads have been put on a CPU so far (``schedstat``'s third field): for an idle
    process, how often it woke up."""
    return _schedstat(pid)[2]


def _schedstat(pid: int) -> tuple[int, int, int]:
    """``schedstat``'s fields (run time in ns, ns waiting on a run queue, times put on a CPU) summed over a
    process's threads; zeros when the process is gone or the kernel keeps no schedstat."""
    run = wait = slices = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                fields = [int(x) for x in (task / "schedstat").read_text().split()[:3]]
                if len(fields) == 3:
                    run, wait, slices = run + fields[0], wait + fields[1], slices + fields[2]
    return run, wait, slices


def _status_kib(pid: int, name: str) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return float(line.split()[1])
    return 0.0


def rss_mib(pid: int, *, peak: bool = False) -> float:
    """Resident memory (VmRSS, or the peak VmHWM) in MiB; 0 when the process is gone."""
    return _status_kib(pid, "VmHWM" if peak else "VmRSS") / 1024


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (iowait and steal counted idle)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def event_loop_of(pid: int) -> str:
    """``uvloop`` when the process has uvloop's extension mapped, else ``asyncio``; ``?`` when gone."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "?"
    return "uvloop" if "/uvloop/loop." in maps else "asyncio"


async def redis_calls(redis: Redis) -> dict[str, int]:
    """Calls per command so far (INFO commandstats), the bench's own INFO calls left out."""
    stats = await redis.info("commandstats")
    out: dict[str, int] = {}
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_")
        if name != "info" and isinstance(value, dict):
            out[name] = int(value.get("calls", 0))
    return out


@dataclass
class Sample:
    at: float
    cpu: dict[str, float]
    busy: int
    total: int
    wait: dict[str, float] = field(default_factory=dict)  # seconds runnable but not running, per process


@dataclass
class Window:
    """What happened between two samples: seconds, CPU seconds per process, machine cores busy, and the
    seconds each process spent waiting for a core (runnable, not running)."""

    seconds: float
    cpu: dict[str, float]
    cores_busy: float
    wait: dict[str, float] = field(default_factory=dict)

    def share(self, name: str) -> float:
        """``name``'s CPU as a fraction of one core."""
        return self.cpu[name] / self.seconds if self.seconds > 0 else 0.0

    def waited(self, name: str) -> float:
        """The fraction of the window ``name`` was ready to run but had no core (0 when not measured)."""
        return self.wait.get(name, 0.0) / self.seconds if self.seconds > 0 else 0.0

    def per_op_us(self, name: str, ops: float) -> float:
        return 1e6 * self.cpu[name] / ops if ops > 0 else math.nan

    def text(self) -> str:
        parts = [
            f"{name} {100 * self.share(name):.0f}%" + (f" (+{100 * w:.0f}% waiting for a core)" if w >= 0.01 else "")
            for name in self.cpu
            for w in (self.waited(name),)
        ]
        return f"CPU (% of one core): {', '.join(parts)}; machine {self.cores_busy:.2f} of {os.cpu_count()} cores busy"


@dataclass
class Meter:
    """CPU seconds of named processes (pid each), sampled at chosen instants."""

    pids: dict[str, int]
    samples: list[Sample] = field(default_factory=list)

    def sample(self) -> Sample:
        busy, total = machine_jiffies()
        read = {name: cpu_and_wait(pid) for name, pid in self.pids.items()}
        cpu = {name: seconds for name, (seconds, _) in read.items()}
        wait = {name: waited for name, (_, waited) in read.items()}
        s = Sample(time.monotonic(), cpu, busy, total, wait)
        self.samples.append(s)
        return s

    @staticmethod
    def between(a: Sample, b: Sample) -> Window:
        jiffies = b.total - a.total
        cores = (os.cpu_count() or 1) * (b.busy - a.busy) / jiffies if jiffies > 0 else 0.0
        wait = {name: b.wait[name] - a.wait[name] for name in a.wait if name in b.wait}
        return Window(b.at - a.at, {name: b.cpu[name] - a.cpu[name] for name in a.cpu}, cores, wait)
