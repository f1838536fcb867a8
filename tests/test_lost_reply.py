"""A lost reply (issue 32): the poll that saw the completion is written, but its answer never comes back.

The worker's Redis goes through a proxy (tests/proxy.py) that forwards that write and drops the connection
before the reply. What follows the write (starting the DriveItem resolution) is recovered from the stored
state, not at the completed monitor's recheck a minute later.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.core.tracking import RESOLVE_RECHECK
from relay.simulator import Simulator
from tests.helpers import Receiver, running_api, running_worker, with_settings
from tests.proxy import CuttingProxy
from tests.test_end_to_end import job_fields


async def test_a_lost_reply_to_the_completing_poll_costs_no_recheck(
    settings: Settings, redis: Redis, simulator: Simulator, receiver: Receiver
) -> None:
    proxy = CuttingProxy(settings_port(settings), cut_on=b'"resolving"', cuts_left=1)
    await proxy.start()
    try:
        async with running_api(settings) as api, running_worker(with_settings(settings, redis_url=proxy.url)):
            op = simulator.create(duration=0.5)
            job = await api.create(**job_fields(simulator, op.monitor_url, receiver))
            # bounded well below the recheck: a job left to it would fail here
            await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=RESOLVE_RECHECK / 3)
            done = time.monotonic()
    finally:
        await proxy.stop()
    assert len(proxy.cuts) == 1, "the completing poll's reply was not cut"
    terminal = receiver.terminal(job["id"])
    assert terminal is not None and terminal["type"] == "job.completed"
    assert terminal["data"]["driveItem"]["id"] == op.resource_id
    print(f"lost reply: job completed {done - proxy.cuts[0]:.2f} s after the reply was cut")


def settings_port(settings: Settings) -> int:
    return int(settings.redis_url.rsplit(":", 1)[1].split("/", 1)[0])
