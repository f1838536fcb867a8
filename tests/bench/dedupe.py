"""Section 6: one monitor shared by 100 jobs is polled like a monitor of one job."""

from __future__ import annotations

import uuid

from tests.bench import peers
from tests.bench.harness import Harness

__all__ = ["run"]


async def run(h: Harness) -> None:
    pairs, sharing = 3, 100
    sim_proc, sim = h.spawn_server("sim")
    rec_proc, receiver = h.spawn_server("receiver")
    worker = None
    try:
        await h.fresh_redis()
        worker = await h.start_worker(h.relay_env(RELAY_POLL_INITIAL_INTERVAL=0.1, RELAY_POLL_MAX_INTERVAL=6))
        ops = await peers.sim_create(h.http, sim, [{"duration": 10.0}] * (2 * pairs))
        shared, single = ops[:pairs], ops[pairs:]
        specs = []
        for op in shared:
            specs += [(uuid.uuid4().hex, peers.job_fields(h.vault, f"{receiver}/hook"), op["monitorUrl"])
                      for _ in range(sharing)]  # fmt: skip
        for op in single:
            specs.append((uuid.uuid4().hex, peers.job_fields(h.vault, f"{receiver}/hook"), op["monitorUrl"]))
        await peers.register(h.store, specs)
        expected = pairs * sharing + pairs

        async def all_completed() -> bool:
            return len(await peers.received(h.http, receiver, "c")) >= expected

        done = await h.wait_until(all_completed, 30, 0.5)
        got = len(await peers.received(h.http, receiver, "c"))
        polls = (await peers.sim_polls(h.http, sim))["ops"]
    finally:
        h.stop(worker, sim_proc, rec_proc)
    shared_polls = sum(polls[op["id"]]["polls"] for op in shared)
    single_polls = sum(polls[op["id"]]["polls"] for op in single)
    ratio = shared_polls / single_polls if single_polls else 0.0
    if not done:
        h.note(f"dedupe: {got} of {expected} job.completed arrived")
    h.add(
        f"6 polls of {pairs} monitors x {sharing} jobs vs {pairs} monitors x 1 job",
        f"{shared_polls}",
        f"{single_polls}",
        ratio,
        f"<= 1.5 (not {sharing})",
        ratio <= 1.5 and done,
    )
