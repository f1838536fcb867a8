"""The bench's result table, and the machine and code every figure was measured on."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOT", "Row", "code_root", "code_state", "cpu_model", "machine", "machine_line", "print_table"]

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Row:
    figure: str
    relay: str
    baseline: str
    ratio: float | None
    target: str
    ok: bool
    info: bool = False  # a figure shown beside others, with no target of its own


def code_root(relay_bin: str) -> Path:
    """The checkout a relay executable runs: ``<checkout>/.venv/bin/relay`` (``--relay-bin`` of another
    worktree) names that checkout; anything else is taken to be this one."""
    parents = Path(relay_bin).absolute().parents
    candidate = parents[2] if len(parents) > 2 else ROOT
    return candidate if (candidate / "relay").is_dir() and (candidate / "workers").is_dir() else ROOT


#: files whose edit mid-run would mix versions in the figures
_CODE_SUFFIXES = frozenset({".py", ".lua"})


def code_state(root: Path = ROOT) -> tuple[str, dict[str, float]]:
    """The commit and uncommitted changes of relay/ and workers/ in ``root``, and their files' mtimes (to spot
    edits mid-run)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)  # noqa: S603, S607
        except OSError:
            return ""
        return done.stdout.rstrip()  # not lstrip: porcelain lines start with a space

    dirty = git("status", "--porcelain", "--", "relay", "workers").splitlines()
    text = git("rev-parse", "--short", "HEAD") or "unknown"
    if dirty:
        text += " + uncommitted: " + ", ".join(line[3:] for line in dirty)
    mtimes = {
        str(p): p.stat().st_mtime
        for d in ("relay", "workers")
        for p in (root / d).rglob("*")
        if p.suffix in _CODE_SUFFIXES  # the Lua scripts are code under test too (loaded at each start)
    }
    return text, mtimes


def cpu_model() -> str:
    """The CPU's ``model name`` from /proc/cpuinfo; '' where there is none."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def machine() -> dict[str, str]:
    """CPU model (/proc/cpuinfo), core count, Python, Redis version, load average."""
    model = cpu_model() or "unknown"
    from relay.store.embedded import find_redis_server

    redis_bin = find_redis_server()
    try:
        version = subprocess.run([redis_bin, "--version"], capture_output=True, text=True, check=False).stdout  # noqa: S603
        redis_version = version.split()[2].removeprefix("v=") if version else "?"
    except OSError:
        redis_version = "?"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "redis": f"{redis_version} ({shutil.which(redis_bin) or redis_bin})",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def machine_line(info: dict[str, str]) -> str:
    return (
        f"machine: CPU {info['cpu']}, {info['nproc']} cores, Python {info['python']}, Redis {info['redis']}; "
        f"event loop: {info['loops']}"
    )


def print_table(rows: list[Row], notes: list[str], info: dict[str, str], walls: dict[int, float], total: float) -> None:
    headers = ("figure", "relay", "baseline", "ratio", "target", "result")
    cells = [
        (r.figure, r.relay, r.baseline, "" if r.ratio is None else f"{r.ratio:.2f}", r.target,
         "info" if r.info else "pass" if r.ok else "FAIL")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print()
    print(machine_line(info))
    print(f"load average at start {info['load']}, at end {info['load_end']}; code under test: {info['code']}")
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    if notes:
        print("\nnotes:")
        for text in notes:
            print(f"  - {text}")
    print("\nsection wall times: " + ", ".join(f"[{k}] {v:.0f} s" for k, v in walls.items()))
    print(f"total wall time: {total:.0f} s")
    print("bench: PASS" if all(r.ok or r.info for r in rows) else "bench: FAIL (a target was missed)")
