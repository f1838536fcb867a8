"""Section 5: polls and completion lag vs a fixed 1-second poller, and the same mix with progressInterval 5 s;
then the pollers users would run instead, run on the same copies (tests/bench/pollers.py).

Time-scaled by 1/10: copies of 5 s-10 min last 0.5-60 s, poll intervals 0.1-6 s, the fixed poller polls
every 0.1 s and ``progressInterval: 5`` becomes 0.5 s. Two sets of the same copies run at once on one
worker: one plain, one with the progress interval on every job. For the second set, the age of the
progress the app has seen is sampled every (scaled) second of each copy: how long ago the simulator's
true progress was the percentage of the newest job.progress that had arrived.
"""

from __future__ import annotations

import math
import random
import uuid
from typing import Any

from tests.bench import peers, pollers
from tests.bench.harness import Harness
from tests.bench.measure import pct

__all__ = ["progress_ages", "run"]

SCALE = 10.0
PROGRESS_INTERVAL = 5.0  # real seconds; 0.5 s scaled
#: copies of the mix each poller of tests/bench/pollers.py waits for (the first of relay's, same durations)
POLLER_JOBS = 100


def progress_ages(info: dict[str, Any], seen: list[tuple[float, float]], step: float) -> list[float]:
    """Ages (s) of the newest progress the app had, sampled every ``step`` s while the copy ran.

    ``seen`` is [(arrival time, percentage)] of the job's job.progress events; progress is linear from
    ``created`` to ``created + duration``, so a percentage p was true at ``created + p/100 * duration``.
    Before the first event the app knows 0% as of the copy's start.
    """
    created, duration = info["created"], info["duration"]
    arrivals = sorted(seen)
    ages = []
    newest, i = 0.0, 0
    t = created + step
    while t < created + duration:
        while i < len(arrivals) and arrivals[i][0] <= t:
            newest = max(newest, arrivals[i][1])
            i += 1
        ages.append(t - (created + newest / 100.0 * duration))
        t += step
    return ages


async def run(h: Harness) -> None:
    n: int = h.args.mix_jobs
    rng = random.Random(5)
    sim_proc, sim = h.spawn_server("sim")
    rec_proc, receiver = h.spawn_server("receiver")
    worker = None
    sets: dict[str, dict[str, str]] = {"plain": {}, "live": {}}  # op id -> job id
    try:
        await h.fresh_redis()
        worker = await h.start_worker(h.relay_env(RELAY_POLL_INITIAL_INTERVAL=0.1, RELAY_POLL_MAX_INTERVAL=6))
        # durations log-uniform over 5 s .. 10 min, scaled by 1/10; the same copies in both sets
        knobs = [{"duration": math.exp(rng.uniform(math.log(0.5), math.log(60.0)))} for _ in range(n)]
        specs = []
        for name, interval in (("plain", None), ("live", PROGRESS_INTERVAL / SCALE)):
            for op in await peers.sim_create(h.http, sim, knobs, record=True):
                jid = sets[name][op["id"]] = uuid.uuid4().hex
                fields = peers.sim_job_fields(h.vault, sim, receiver, progress_interval=interval)
                specs.append((jid, fields, op["monitorUrl"]))
        await peers.register(h.store, specs)

        async def all_completed() -> bool:
            return len(await peers.received(h.http, receiver, "c")) >= 2 * n

        done = await h.wait_until(all_completed, 60 + 30, 0.5)
        records = await peers.received(h.http, receiver, "cp")
        polls = (await peers.sim_polls(h.http, sim))["ops"]
        h.stop(worker)
        worker = None
        subset = knobs[: min(n, POLLER_JOBS)]
        runs = await pollers.run_pollers(h.http, sim, subset, SCALE, max(k["duration"] for k in subset) + 10)
        verdicts = await pollers.forms(h.http, sim, SCALE)
    finally:
        h.stop(worker, sim_proc, rec_proc)
    completed = {row[2]: row[0] for row in records if row[1] == "c"}
    progress: dict[str, list[tuple[float, float]]] = {}
    for t, kind, jid, value in records:
        if kind == "p" and value is not None:
            progress.setdefault(jid, []).append((t, value))
    if not done:
        h.note(f"mix: only {len(completed)} of {2 * n} jobs completed in time")
    plain_polls = plain_rows(h, n, polls, sets["plain"], completed, done)
    live_rows(h, polls, sets, progress, done, plain_polls)
    poller_rows(h, polls, sets["plain"], runs, verdicts)


def poller_rows(
    h: Harness,
    polls: dict[str, Any],
    ops: dict[str, str],
    runs: dict[str, pollers.PollerRun],
    verdicts: dict[str, dict[str, str]],
) -> None:
    """relay beside each poller: monitor requests per job and detection lag (completion -> the poll that saw
    it, x10 for real time). relay must make fewer requests than every poller as fast as it, and be faster
    than every poller that makes as few."""
    same = list(ops)[:POLLER_JOBS]  # the copies the pollers waited for (same durations, created in this order)
    requests = [polls[op]["polls"] for op in same]
    lags = []
    for op in same:
        info = polls[op]
        after = [t for t in info["times"] if t >= info["created"] + info["duration"]]
        if after:
            lags.append(min(after) - info["created"] - info["duration"])
    per_job = sum(requests) / len(requests) if requests else 0.0
    mine = pct(lags, 0.5) if lags else math.inf
    h.info(
        f"5 relay: monitor requests per job; detection lag (the first {len(same)} jobs)",
        f"{per_job:.1f}; {pollers.lag_text(lags, SCALE)}",
    )
    for name, run in runs.items():
        theirs = pollers.median_or_inf(run.lags)
        as_fast, as_few = theirs <= mine, run.per_job() <= per_job
        ok = (not as_fast or per_job < run.per_job()) and (not as_few or mine < theirs)
        seen = ", ".join(f"{v} {c}" for v, c in sorted(run.verdicts.items()))
        h.add(
            f"5 {name}: monitor requests per job; detection lag ({len(run.requests)} of the same copies)",
            f"relay {per_job:.1f}; {pollers.lag_text(lags, SCALE)}",
            f"{run.per_job():.1f}; {pollers.lag_text(run.lags, SCALE)} ({seen})",
            per_job / run.per_job() if run.per_job() else None,
            "fewer if as fast; faster if as few",
            ok,
        )
    forms = list(pollers.FORMS)
    for name, by_form in verdicts.items():
        h.note(f"5 {name}, by monitor form: " + "; ".join(f"{form} -> {by_form.get(form, '?')}" for form in forms))
    h.note(
        "5 pollers: fixed pollers read a 303, a 200 with the item or status completed as the end and status "
        "failed as a failure (the best a hand-written poller does); azure-core's AsyncLROPoller (default "
        "AsyncLROBasePolling: Retry-After, else 30 s) over redirect and retry policies, from the copy's 202, "
        "its copies ending in a 200 with the item (the form it completes); "
        "relay handles every form (tests/test_simulator_forms.py); lags are detection (completion -> the poll "
        "that saw it), time-scaled 1/10 and shown x10"
    )


def plain_rows(
    h: Harness, n: int, polls: dict[str, Any], ops: dict[str, str], completed: dict[str, float], done: bool
) -> int:
    relay_polls = int(sum(polls[op]["polls"] for op in ops))
    fixed_polls = sum(math.ceil(polls[op]["duration"] / 0.1) for op in ops)
    raw, detect, pipeline, fixed_detect = [], [], [], []
    for op_id, jid in ops.items():
        info = polls[op_id]
        if jid not in completed:
            continue
        complete = info["created"] + info["duration"]
        after = [t for t in sorted(info["times"]) if t >= complete]
        if not after:
            continue
        raw.append(completed[jid] - complete)
        detect.append(after[0] - complete)
        pipeline.append(completed[jid] - after[0])
        fixed_detect.append(math.ceil(info["duration"] / 0.1) * 0.1 - info["duration"])
    ratio = relay_polls / fixed_polls if fixed_polls else 0.0
    h.add(
        f"5 monitor requests, {n} jobs 5 s-10 min vs fixed 1 s poller",
        f"{relay_polls:,}",
        f"{fixed_polls:,} (computed)",
        ratio,
        "<= 0.33",
        ratio <= 1 / 3 and done,
    )
    if raw:
        real = [SCALE * d + p for d, p in zip(detect, pipeline, strict=True)]
        fixed_real = SCALE * pct(fixed_detect, 0.5) + pct(pipeline, 0.5)
        h.note(
            f"mix (time-scaled 1/10: durations 0.5-60 s, intervals 0.1-6 s, fixed poller 0.1 s): "
            f"median lag raw {pct(raw, 0.5):.3f} s, x10 {SCALE * pct(raw, 0.5):.2f} s; "
            f"median detection (completion -> completing poll) {pct(detect, 0.5):.3f} s raw, "
            f"median pipeline (completing poll -> webhook: DriveItem resolution + delivery, not scaled) "
            f"{pct(pipeline, 0.5):.3f} s; real-time estimate = 10 x detection + pipeline"
        )
        median = pct(real, 0.5)
        h.add(
            "5 median completion lag (real-time estimate; raw x10 in notes)",
            f"{median:.2f} s (x10 raw {SCALE * pct(raw, 0.5):.2f})",
            f"{fixed_real:.2f} s (fixed poller est.)",
            median / fixed_real if fixed_real else None,
            "<= 2 s",
            median <= 2.0 and done,
        )
    return relay_polls


def live_rows(
    h: Harness,
    polls: dict[str, Any],
    sets: dict[str, dict[str, str]],
    progress: dict[str, list[tuple[float, float]]],
    done: bool,
    plain_polls: int,
) -> None:
    live = sets["live"]
    relay_polls = sum(polls[op]["polls"] for op in live)
    fixed_polls = sum(math.ceil(polls[op]["duration"] / 0.1) for op in live)
    ratio = relay_polls / fixed_polls if fixed_polls else 0.0
    h.add(
        f"5 same mix with progressInterval {PROGRESS_INTERVAL:g} s: monitor requests vs fixed 1 s poller",
        f"{relay_polls:,} (without: {plain_polls:,})",
        f"{fixed_polls:,} (computed)",
        ratio,
        "<= 0.33",
        ratio <= 1 / 3 and done,
    )
    step = 1.0 / SCALE
    ages = {
        name: [age for op, jid in ops.items() for age in progress_ages(polls[op], progress.get(jid, []), step)]
        for name, ops in sets.items()
    }
    if not ages["live"]:
        h.add("5 progressInterval: median age of the progress seen", "no data", "", None, "", False)
        return
    median = SCALE * pct(ages["live"], 0.5)
    plain = SCALE * pct(ages["plain"], 0.5) if ages["plain"] else math.nan
    h.add(
        f"5 progressInterval {PROGRESS_INTERVAL:g} s: median age of the newest progress the app has seen",
        f"{median:.2f} s (p90 {SCALE * pct(ages['live'], 0.9):.2f})",
        f"{plain:.2f} s (without progressInterval)",
        median / PROGRESS_INTERVAL,
        f"<= {PROGRESS_INTERVAL:g} s",
        median <= PROGRESS_INTERVAL and done,
    )
    h.note(
        f"progress age: sampled every {step:g} s (scaled) of every copy, {len(ages['live']):,} samples; "
        f"age = sample time - when the simulator's linear progress was the newest percentage received "
        f"(0% at the copy's start before the first job.progress); shown x10 (real-time estimate)"
    )
