"""Rows 1-3 as rate ratios, each with its cost per operation beside it, from the same windows.

A cost row shows the CPU microseconds relay's process and Redis spent per operation against what the
bare side's own process spent per request; the peer both sides talk to (simulator, receiver, load
generator) is shown for both in a note, as a check that it was not the bottleneck of one side only.

relay and its floor are measured in interleaved windows (:func:`interleave`: relay, floor, floor, relay,
relay, floor, ...), ``--rounds`` of each: a machine that slows down for a while slows both sides, and each
figure is the median of its windows with their spread (lowest-highest) printed beside it. relay's own code
per operation is the difference of the two sides' CPU in the same round, its median over the rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable

from tests.bench.harness import Harness, Run

__all__ = ["DRIFT_NOTE", "drift", "floor_rows", "interleave", "mean", "median", "spread", "throughput_rows"]

#: relay's own code per operation (relay - floor) at most this many times the parts it cannot skip, alone
OWN_CODE_TARGET = 2.0


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def spread(values: list[float], digits: int = 0) -> str:
    """``median (lowest-highest)`` of ``values``; the median alone for one value."""
    if len(values) < 2:
        return f"{median(values):,.{digits}f}"
    return f"{median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


async def interleave(
    h: Harness, relay: Callable[[], Awaitable[Run]], floor: Callable[[], Awaitable[Run]]
) -> tuple[list[Run], list[Run]]:
    """``h.args.rounds`` windows of each side, in the order relay, floor, floor, relay, relay, floor, ...: each
    side comes first in half the rounds, so a trend in the machine's speed does not favour one."""
    relays: list[Run] = []
    floors: list[Run] = []
    for i in range(h.args.rounds):
        order = ((relay, relays), (floor, floors)) if i % 2 == 0 else ((floor, floors), (relay, relays))
        for window, runs in order:
            runs.append(await window())
    return relays, floors


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
    relay: list[Run],
    relay_proc: str,
    bare: list[Run],
    bare_proc: str,
    peers: tuple[str, ...],
    ok: bool = True,
    extra: tuple[str, str] = ("", ""),
) -> None:
    """The throughput row (target >= 0.75 of the bare rate) and its cost-per-operation row; relay's figures are
    the medians of its windows."""
    number = figure.split()[0]
    base_rate = mean([b.rate for b in bare])
    rate = median([r.rate for r in relay])
    ratio = rate / base_rate if base_rate else 0.0
    h.add(
        figure,
        f"{spread([r.rate for r in relay])}/s{extra[0]}",
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
    own, redis = median([r.us(relay_proc) for r in relay]), median([r.us("redis") for r in relay])
    bare_us = mean([b.us(bare_proc) for b in bare])
    h.info(
        f"{number} CPU per {unit}: relay {relay_proc} + Redis vs bare {bare_proc} (µs)",
        f"{spread([r.us(relay_proc) for r in relay])} + {redis:,.0f} = {own + redis:,.0f}",
        f"{bare_us:,.0f} ({' / '.join(f'{b.us(bare_proc):,.0f}' for b in bare)})",
        (own + redis) / bare_us if bare_us else None,
    )
    shared = "; ".join(
        f"{peer} {median([r.us(peer) for r in relay]):,.0f} µs beside relay, "
        f"{mean([b.us(peer) for b in bare]):,.0f} beside the bare loop"
        for peer in peers
    )
    h.note(
        f"{number} per {unit}: {shared}; machine busy {median([r.window.cores_busy for r in relay]):.2f} cores "
        f"(relay windows), {mean([b.window.cores_busy for b in bare]):.2f} (bare windows); ready to run but "
        f"without a core: relay {relay_proc} {median([r.window.waited(relay_proc) for r in relay]):.0%} of its "
        f"window, bare {bare_proc} {mean([b.window.waited(bare_proc) for b in bare]):.0%}"
    )
    h.costs[key] = {"own_us": own, "redis_us": redis, "rate": rate, "bare_us": bare_us}


def floor_rows(
    h: Harness, *, number: str, unit: str, floor_is: str, bare_is: str, relay: list[Run], relay_proc: str,
    floor: list[Run], bare: list[Run], trouble: str = "", parts: dict[str, float] | None = None,
) -> None:  # fmt: skip
    """The floor's rate against its bare loop (the most a durable loop of that shape reaches on the machine)
    and relay's CPU per operation against the floor's (what relay's own code costs); tests/bench/floors.py.
    ``relay`` and ``floor`` are interleaved windows (:func:`interleave`), paired by round.
    ``parts``: what the operation cannot skip, timed alone (tests/bench/parts.py), beside relay - floor: the
    row fails when relay's own code costs more than :data:`OWN_CODE_TARGET` times the parts."""
    bare_rate = mean([b.rate for b in bare])
    floor_rates = [f.rate for f in floor]
    h.info(
        f"{number} floor: {floor_is} (rate vs {bare_is})",
        f"{spread(floor_rates)}/s{trouble}",
        f"{bare_rate:,.0f}/s",
        median(floor_rates) / bare_rate if bare_rate else None,
    )
    relay_us, floor_us = [r.us(relay_proc) for r in relay], [f.us("floor") for f in floor]
    own, lowest = median(relay_us), median(floor_us)
    h.info(
        f"{number} CPU per {unit}: relay {relay_proc} vs floor (µs, median (range) of {len(relay)} windows "
        "each); Redis beside each",
        f"{spread(relay_us)}; Redis {median([r.us('redis') for r in relay]):,.0f}",
        f"{spread(floor_us)}; Redis {median([f.us('redis') for f in floor]):,.0f}",
        own / lowest if lowest else None,
    )
    for side, values in (
        ("floor's rate", floor_rates),
        ("floor's CPU per op", floor_us),
        ("relay's CPU per op", relay_us),
    ):
        moved = drift(values)
        if moved > DRIFT_NOTE:
            h.note(f"{number}: the {side} moved {moved:.0%} between its windows ({spread(values)})")
    differences = [r - f for r, f in zip(relay_us, floor_us, strict=True)]
    h.costs[f"own_{number}"] = {"own_us": median(differences), "relay_us": own, "floor_us": lowest}
    if parts is not None:
        alone = sum(parts.values())
        ratio = median(differences) / alone if alone else 0.0
        h.add(
            f"{number} relay's own code per {unit} (relay - floor, µs, by round) vs the parts it cannot skip, alone",
            spread(differences),
            f"{alone:.1f} ({', '.join(f'{name} {us:.1f}' for name, us in parts.items())})",
            ratio,
            f"<= {OWN_CODE_TARGET:.2f}",
            ratio <= OWN_CODE_TARGET,
        )
