"""The parts of an operation relay cannot skip, timed alone in a tight loop in the bench's own process.

A registration must read its body, validate it, check its URLs (SSRF, allowlists), seal the authorization
and the monitor URL, make an id and render its answer; a delivery must read its claimed state, sign the
body (``standardwebhooks``) and build its ack. Timed here with nothing else running (no HTTP, no Redis, no
log line, each monitor URL a new one as under load), they are a lower bound on what relay's own code
costs per operation: set beside the room a row's target leaves above its floor (tests/bench/floors.py).
"""

from __future__ import annotations

import itertools
import secrets
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from relay.api.models import JobCreate, check_destinations
from relay.api.schemas import job_view
from relay.core import jsonfast
from relay.core.crypto import Vault
from relay.core.schema import DeliveryOutcome, Job
from relay.core.signing import signature_headers
from relay.store.calls import AckCall
from relay.store.jobs import PollInfo, Store
from relay.store.scheduler import Claim

__all__ = ["delivery_parts", "registration_parts", "timed"]

HOSTS = ("127.0.0.1",)
ROUNDS = 20_000


def timed(part: Callable[[], Any], rounds: int = ROUNDS) -> float:
    """Microseconds per call of ``part``, the best of three runs of ``rounds`` calls."""
    return min(timeit.repeat(part, number=rounds, repeat=3)) / rounds * 1e6


def registration_parts(body_template: str, secret: str, rounds: int = ROUNDS) -> dict[str, float]:
    """µs per registration of each part ``POST /v1/jobs`` cannot skip, for bodies like ``body_template``."""
    raws = [body_template.replace("{n}", str(n)).encode() for n in range(3 * rounds + 10)]
    raw_cycle = itertools.cycle(raws)
    fresh = iter([jsonfast.loads(raw) for raw in raws])  # a new monitor URL each time, as under load
    # the checks and the sealing come right after validation parsed the same URLs: yarl's cache has them
    jobs = itertools.cycle([JobCreate.model_validate(jsonfast.loads(raw)) for raw in raws[:100]])
    vault = Vault((secret,))

    def checks() -> None:
        job = next(jobs)
        check_destinations(
            monitor_url=job.monitor_url,
            callback_url=job.callback_url,
            drive_item_url=job.drive_item_url,
            monitor_hosts=HOSTS,
            item_hosts=HOSTS,
            trusted_hosts=HOSTS,
        )

    def seal() -> None:
        job = next(jobs)
        vault.encrypt(job.authorization or "")
        vault.seal(job.monitor_url or "")

    sample = JobCreate.model_validate(jsonfast.loads(raws[0]))
    fields = {
        "owner": "public",
        "callback_url": sample.callback_url,
        "drive_item_url": sample.drive_item_url or "",
        "metadata": sample.metadata_json() or "",
        "created": str(int(time.time() * 1000)),
        "monitor_host": "127.0.0.1",
    }
    stored = Job.from_hash(secrets.token_hex(16), fields)
    info = PollInfo(0, 0, time.time() * 1000)
    return {
        "read the body": timed(lambda: jsonfast.loads_request(next(raw_cycle)), rounds),
        "validate": timed(lambda: JobCreate.model_validate(next(fresh)), rounds),
        "check URLs": timed(checks, rounds),
        "seal two values": timed(seal, rounds),
        "make an id": timed(lambda: secrets.token_hex(16), rounds),
        "render the answer": timed(lambda: jsonfast.dumps(job_view(stored, info)), rounds),
    }


def delivery_parts(body: str, secret: str, rounds: int = ROUNDS) -> dict[str, float]:
    """µs per delivery of each part a delivery cannot skip, for an event body like ``body``."""
    now_ms = int(time.time() * 1000)
    state = [
        ["http://127.0.0.1:9/hook", None, "public"],
        "msg_" + "0" * 32,
        ["job.completed", "1", body, "0", str(now_ms), None],
    ]
    claim = Claim("0" * 32, "|claim:1", now_ms, state)
    _, events = Store.outbox_state(claim)
    event = events[0]
    record = {"eventId": event.id, "type": event.type, "sequence": event.sequence, "attempt": 1, "time": "-"}

    def ack() -> None:
        call = AckCall(claim.member, claim.token, event.id, DeliveryOutcome.DELIVERED, 0, [], [], "{}")
        call.records = [jsonfast.dumps(record).decode()]
        jsonfast.dumps(call)

    return {
        "read the claimed state": timed(lambda: Store.outbox_state(claim), rounds),
        "sign": timed(lambda: signature_headers(event.id, event.body, (secret,), datetime.now(UTC)), rounds),
        "build the ack": timed(ack, rounds),
    }
