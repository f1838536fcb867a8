"""``--profile``: py-spy samples a relay process after a section's measured window.

Prints the top own-time frames, the top inclusive frames in relay/ and workers/, and one line that
splits the process's CPU per operation by where the time was spent (aiohttp, redis-py, the event loop,
relay's own code, serialisation and logging).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.bench.harness import Harness
from tests.bench.report import ROOT

__all__ = ["category", "profile"]

#: own time by the file a frame is in: (category, path markers), first match wins
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("relay", ("relay/", "workers/")),
    ("aiohttp", ("aiohttp/", "yarl/", "multidict/", "aiosignal/", "frozenlist/", "propcache/")),
    ("redis-py", ("redis/", "hiredis", "arq/")),
    ("event loop", ("asyncio/", "selectors.py", "uvloop/", "socket.py", "ssl.py")),
    ("serialising", ("json/", "orjson", "pydantic", "cryptography/", "standardwebhooks", "base64", "hmac")),
    ("logging", ("structlog/", "logging/", "prometheus_client/")),
)


def category(frame: str) -> str:
    for name, markers in CATEGORIES:
        if any(marker in frame for marker in markers):
            return name
    return "other"


def _short_frame(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def _pyspy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


async def profile(h: Harness, pid: int, seconds: float, name: str, us_per_op: float | None = None) -> None:
    """py-spy ``pid`` for ``seconds``; ``us_per_op`` (its CPU per operation) turns shares into microseconds."""
    pyspy = _pyspy()
    if pyspy is None:
        h.note("profile: py-spy not installed (.venv/bin/pip install py-spy)")
        return
    out = h.tmp / f"profile-{name.split(':')[0].replace(' ', '-')}.txt"
    rate = 100
    proc = await asyncio.create_subprocess_exec(
        pyspy, "record", "-d", str(int(seconds)), "-r", str(rate), "-f", "raw", "--function",
        "-o", str(out), "--pid", str(pid),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await proc.wait()
    if not out.exists():
        h.note(f"profile {name}: py-spy produced nothing (ptrace not permitted?)")
        return
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short_frame(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        h.note(f"profile {name}: no samples")
        return
    busy = 100 * total / (seconds * rate)
    print(f"\n  profile ({name}): {total} samples in {seconds:.0f} s, busy ~{busy:.0f}% of a core")
    print("    top own time:")
    for frame, count in own.most_common(15):
        print(f"      {100 * count / total:5.1f}%  {frame}")
    print("    top inclusive time in relay/ and workers/:")
    shown = [(f, c) for f, c in inclusive.most_common() if "relay/" in f or "workers/" in f][:15]
    for frame, count in shown:
        print(f"      {100 * count / total:5.1f}%  {frame}")
    print(f"    (raw stacks: {out})", flush=True)
    by_category: Counter[str] = Counter()
    for frame, count in own.items():
        by_category[category(frame)] += count
    parts = []
    for cat, count in by_category.most_common():
        share = count / total
        parts.append(f"{cat} {100 * share:.0f}%" + (f" ({share * us_per_op:,.0f} µs)" if us_per_op else ""))
    per_op = f" of {us_per_op:,.0f} µs per operation" if us_per_op else ""
    h.note(f"profile {name}: own time by where it is spent{per_op}: {', '.join(parts)}")
