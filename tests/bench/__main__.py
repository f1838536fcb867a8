"""``python -m tests.bench`` (``make bench``): the sections, the table, and the exit code (1 when a target misses)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.bench import (
    ceiling,
    crowded,
    dedupe,
    deliver,
    fairness,
    idle,
    instructions,
    mix,
    poll,
    register,
    scale,
    shards,
)
from tests.bench.harness import Harness
from tests.bench.report import ROOT, code_root, code_state, machine, print_table

Section = Callable[[Harness], Awaitable[None]]

SECTIONS: dict[int, tuple[str, Section]] = {
    1: ("poll throughput and CPU per poll", poll.run),
    2: ("delivery throughput and CPU per delivery", deliver.run),
    3: ("registration throughput and CPU per registration", register.run),
    4: ("scale and memory", scale.run),
    5: ("fewer polls, less lag; progressInterval", mix.run),
    6: ("dedupe", dedupe.run),
    7: ("scale-out and the one-Redis ceiling", ceiling.run),
    8: ("idle cost (the sidecar case)", idle.run),
    9: ("fairness between tenants", fairness.run),
    10: ("a crowded monitor", crowded.run),
    11: ("a Redis Cluster: 1 shard vs 3", shards.run),
}


def _sections(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        numbers = []
    if not numbers or any(n not in SECTIONS for n in numbers):
        raise argparse.ArgumentTypeError(f"sections are numbers {min(SECTIONS)}-{max(SECTIONS)}, comma-separated")
    return numbers


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    doc = sys.modules["tests.bench"].__doc__ or ""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description=doc.split("\n\n")[0],
        epilog="sections: " + "; ".join(f"{n} {title}" for n, (title, _) in SECTIONS.items()),
    )
    parser.add_argument("--only", type=_sections, default=list(SECTIONS), help="e.g. --only 1 or --only 2,3")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker (sections 1, 2) and the API (3)")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instead of the sections: instructions per poll, delivery and registration under callgrind "
        "(with --only 1,2,3: those of them)",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of the bare baselines, load generators, servers and relay (RELAY_EVENT_LOOP); printed",
    )
    parser.add_argument("--relay-bin", default=str(Path(sys.executable).parent / "relay"), help="relay executable")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rows 1-3: windows of relay and of its floor, interleaved; each figure is their median (range printed)",
    )
    parser.add_argument("--poll-jobs", type=int, default=2000)
    parser.add_argument("--deliveries", type=int, default=40000)
    parser.add_argument("--scale-jobs", type=int, default=10000)
    parser.add_argument("--scale-workers", type=int, default=1)
    parser.add_argument("--mix-jobs", type=int, default=200)
    parser.add_argument("--memory-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000, 100000])
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--fair-jobs", type=int, default=50000, help="tenant A's jobs in section 9")
    parser.add_argument("--crowded-jobs", type=int, default=10000, help="jobs sharing one monitor in section 10")
    parser.add_argument("--shard-jobs", type=int, default=1000, help="copies on the cluster in section 11")
    args = parser.parse_args(argv)
    if args.instructions and not any(n <= 3 for n in args.only):
        parser.error("--instructions counts rows 1-3: give --only 1, 2 and/or 3 (or no --only)")
    if args.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        parser.error("--loop uvloop: uvloop is not installed (.venv/bin/pip install uvloop)")
    return args


async def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    info = machine()
    root = code_root(args.relay_bin)
    code, mtimes = code_state(root)
    if root != ROOT:
        code += f" (of {root}, the checkout --relay-bin runs)"
    info["code"] = code
    h = Harness(args)
    print(f"code under test: {code}")
    print(f"relay bench: logs in {h.tmp}; relay = {args.relay_bin}")
    print(f"machine: CPU {info['cpu']}, {info['nproc']} cores, Python {info['python']}, Redis {info['redis']}")
    print(f"load average at start: {info['load']}", flush=True)
    await h.open()
    walls: dict[int, float] = {}
    try:
        if args.instructions:
            t = time.monotonic()
            await instructions.run(h, [n for n in args.only if n <= 3])
            walls[0] = time.monotonic() - t
        else:
            for number in args.only:
                title, section = SECTIONS[number]
                print(f"\n[{number}] {title}", flush=True)
                t = time.monotonic()
                await section(h)
                walls[number] = time.monotonic() - t
                print(f"    section {number} wall time: {walls[number]:.0f} s", flush=True)
    finally:
        await h.close()
    changed = [p for p, m in code_state(root)[1].items() if mtimes.get(p) != m]
    if changed:
        h.note(
            "relay/workers files changed DURING the run, so figures may mix versions: "
            + ", ".join(str(Path(p).relative_to(root)) for p in changed)
        )
    relay_loops = {v for k, v in h.loops.items() if k.startswith("relay")}
    if args.loop == "uvloop" and relay_loops != {"uvloop"}:
        h.note("--loop uvloop: the bare side ran on uvloop but relay did not (relay chooses its own loop)")
    info["loops"] = ", ".join(f"{k} {v}" for k, v in h.loops.items()) or "none started"
    info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print_table(h.rows, h.notes, info, walls, time.monotonic() - started)
    return 0 if all(row.ok or row.info for row in h.rows) else 1


def main() -> int:
    return asyncio.run(run(parse()))


if __name__ == "__main__":
    sys.exit(main())
