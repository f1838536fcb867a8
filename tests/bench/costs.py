"""Rows 1-3 as rate ratios, each with its cost per operation beside it, from the same windows.

A cost row shows the CPU microseconds relay's process and Redis spent per operation against what the
bare side's own process spent per request; the peer both sides talk to (simulator, receiver, load
generator) is shown for both in a note, as a check that it was not the bottleneck of one side only.
"""

from __future__ import annotations

from tests.bench.harness import Harness, Run

__all__ = ["DRIFT_NOTE", "drift", "floor_rows", "mean", "throughput_rows"]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


#: a bare rate that moved more than this between its two windows gets a note beside its row
DRIFT_NOTE = 0.15


def drift(rates: list[float]) -> float:
    """How far apart the fastest and slowest of ``rates`` are, as a share of the slowest (0 for one rate)."""
    return max(rates) / min(rates) - 1 if rates and min(rates) > 0 else 0.0


def throughput_rows(
    h: Harness,
    *,
    key: str,
    figure: str,
    unit: str,
    relay: Run,
    relay_proc: str,
    bare: list[Run],
    bare_proc: str,
    peers: tuple[str, ...],
    ok: bool = True,
    extra: tuple[str, str] = ("", ""),
) -> None:
    """The throughput row (target >= 0.75 of the bare rate) and its cost-per-operation row."""
    number = figure.split()[0]
    base_rate = mean([b.rate for b in bare])
    ratio = relay.rate / base_rate if base_rate else 0.0
    h.add(
        figure,
        f"{relay.rate:,.0f}/s{extra[0]}",
        f"{base_rate:,.0f}/s ({' / '.join(f'{b.rate:,.0f}' for b in bare)}){extra[1]}",
        ratio,
        ">= 0.75",
        ratio >= 0.75 and ok,
    )
    moved = drift([b.rate for b in bare])
    if moved > DRIFT_NOTE:
        h.note(
            f"{number}: the bare rate moved {moved:.0%} between its windows before and after relay's: the "
            "machine's speed changed during the section, so its ratio is less certain than its digits "
            "(compare costs per operation)"
        )
    own, redis = relay.us(relay_proc), relay.us("redis")
    bare_us = mean([b.us(bare_proc) for b in bare])
    h.info(
        f"{number} CPU per {unit}: relay {relay_proc} + Redis vs bare {bare_proc} (µs)",
        f"{own:,.0f} + {redis:,.0f} = {own + redis:,.0f}",
        f"{bare_us:,.0f} ({' / '.join(f'{b.us(bare_proc):,.0f}' for b in bare)})",
        (own + redis) / bare_us if bare_us else None,
    )
    shared = "; ".join(
        f"{peer} {relay.us(peer):,.0f} µs beside relay, {mean([b.us(peer) for b in bare]):,.0f} beside the bare loop"
        for peer in peers
    )
    h.note(
        f"{number} per {unit}: {shared}; machine busy {relay.window.cores_busy:.2f} cores (relay window), "
        f"{mean([b.window.cores_busy for b in bare]):.2f} (bare windows); ready to run but without a core: "
        f"relay {relay_proc} {relay.window.waited(relay_proc):.0%} of its window, bare {bare_proc} "
        f"{mean([b.window.waited(bare_proc) for b in bare]):.0%}"
    )
    h.costs[key] = {"own_us": own, "redis_us": redis, "rate": relay.rate, "bare_us": bare_us}


def floor_rows(
    h: Harness, *, number: str, unit: str, floor_is: str, bare_is: str, relay: Run, relay_proc: str, floor: Run,
    bare: list[Run], trouble: str = "", parts: dict[str, float] | None = None,
) -> None:  # fmt: skip
    """The floor's rate against its bare loop (the most a durable loop of that shape reaches on the machine)
    and relay's CPU per operation against the floor's (what relay's own code costs); tests/bench/floors.py.
    ``parts``: what the operation cannot skip, timed alone (tests/bench/parts.py), beside relay - floor."""
    bare_rate = mean([b.rate for b in bare])
    h.info(
        f"{number} floor: {floor_is} (rate vs {bare_is})",
        f"{floor.rate:,.0f}/s{trouble}",
        f"{bare_rate:,.0f}/s",
        floor.rate / bare_rate if bare_rate else None,
    )
    floor_us, own = floor.us("floor"), relay.us(relay_proc)
    h.info(
        f"{number} CPU per {unit}: relay {relay_proc} vs floor (µs); Redis beside each",
        f"{own:,.0f}; Redis {relay.us('redis'):,.0f}",
        f"{floor_us:,.0f}; Redis {floor.us('redis'):,.0f}",
        own / floor_us if floor_us else None,
    )
    if parts is not None:
        h.info(
            f"{number} relay's own code per {unit} (relay - floor, µs) vs the parts it cannot skip, alone",
            f"{own - floor_us:,.0f}",
            f"{sum(parts.values()):.1f} ({', '.join(f'{name} {us:.1f}' for name, us in parts.items())})",
        )
