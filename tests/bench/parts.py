"""The parts of an operation relay cannot skip, timed alone in a tight loop in the bench's own process.

A registration must read its body, validate it, check its URLs (SSRF, allowlists), seal the authorization
and the monitor URL, make an id and render its answer; a delivery must read its claimed state, sign the
body (``standardwebhooks``) and build its ack; a poll must read its claimed state (the monitor and its job),
make sense of the answer, plan what follows (the next poll, the job's changes) and build its write. Timed
here with nothing else running (no HTTP, no Redis, no log line, each monitor URL a new one as under load),
they are a lower bound on what relay's own code costs per operation: set beside relay's CPU above its floor
(tests/bench/floors.py).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import subprocess
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from relay.api.destinations import check_destinations
from relay.api.models import JobCreate
from relay.api.schemas import job_view
from relay.config.settings import Settings
from relay.core import jsonfast
from relay.core.crypto import Vault
from relay.core.monitor import classify
from relay.core.schema import DeliveryOutcome, Job
from relay.core.signing import signature_headers
from relay.core.tracking import PollPolicy, plan_poll
from relay.store.calls import AckCall, ApplyPollCall
from relay.store.jobs import PollInfo, Store
from relay.store.scheduler import Claim

__all__ = ["delivery_parts", "poll_calls", "poll_parts", "registration_parts", "save_poll", "timed", "unit_calls"]

HOSTS = ("127.0.0.1",)
ROUNDS = 20_000


def timed(part: Callable[[], Any], rounds: int = ROUNDS) -> float:
    """CPU microseconds per call of ``part``, the best of three runs of ``rounds`` calls: this thread's CPU time,
    like the processes' CPU the rows set it beside (wall time would count the waits for a core of a busy machine:
    the parts timed that way moved 28-49 µs between runs at load 1-6)."""
    return min(timeit.repeat(part, number=rounds, repeat=3, timer=time.thread_time)) / rounds * 1e6


def registration_parts(body_template: str, secret: str, rounds: int = ROUNDS) -> dict[str, float]:
    """µs per registration of each part ``POST /v1/jobs`` cannot skip, for bodies like ``body_template``."""
    calls = registration_calls(body_template, secret, 3 * rounds + 10)
    return {name: timed(call, rounds) for name, call in calls.items()}


def registration_calls(body_template: str, secret: str, count: int) -> dict[str, Callable[[], Any]]:
    """Each part ``POST /v1/jobs`` cannot skip, ready to be called ``count`` times; each returns what it made, so
    that a test can check the timed work is the real work."""
    raws = [body_template.replace("{n}", str(n)).encode() for n in range(count)]
    raw_cycle = itertools.cycle(raws)
    fresh = iter([jsonfast.loads(raw) for raw in raws])  # a new monitor URL each time, as under load
    # the checks and the sealing come right after validation parsed the same URLs: yarl's cache has them
    jobs = itertools.cycle([JobCreate.model_validate(jsonfast.loads(raw)) for raw in raws[:100]])
    vault = Vault((secret,))

    def checks() -> JobCreate:
        job = next(jobs)
        check_destinations(
            monitor_url=job.monitor_url,
            callback_url=job.callback_url,
            drive_item_url=job.drive_item_url,
            monitor_hosts=HOSTS,
            item_hosts=HOSTS,
            trusted_hosts=HOSTS,
        )
        return job

    def seal() -> tuple[JobCreate, str, str]:
        job = next(jobs)
        return job, vault.encrypt(job.authorization or ""), vault.seal(job.monitor_url or "")

    sample = JobCreate.model_validate(jsonfast.loads(raws[0]))
    fields = Job(
        owner="public",
        callback_url=sample.callback_url,
        drive_item_url=sample.drive_item_url or "",
        metadata=sample.metadata_json() or "",
        created=int(time.time() * 1000),
        monitor_host="127.0.0.1",
    ).fields
    stored = Job.from_hash(secrets.token_hex(16), fields)
    info = PollInfo(0, 0, time.time() * 1000)
    return {
        "read the body": lambda: jsonfast.loads_request(next(raw_cycle)),
        "validate": lambda: JobCreate.model_validate(next(fresh)),
        "check URLs": checks,
        "seal two values": seal,
        "make an id": lambda: secrets.token_hex(16),
        "render the answer": lambda: jsonfast.dumps(job_view(stored, info)),
    }


def delivery_parts(body: str, secret: str, rounds: int = ROUNDS) -> dict[str, float]:
    """µs per delivery of each part a delivery cannot skip, for an event body like ``body``."""
    return {name: timed(call, rounds) for name, call in delivery_calls(body, secret).items()}


def delivery_calls(body: str, secret: str) -> dict[str, Callable[[], Any]]:
    """Each part a delivery cannot skip, for an event body like ``body``; each returns what it made."""
    now_ms = int(time.time() * 1000)
    # as claim_deliveries.lua answers it (lib/outbox_state.lua), decoded
    job = Job(callback_url="http://127.0.0.1:9/hook", owner="public").fields
    fields = {"type": "job.completed", "seq": "1", "body": body, "attempts": "0", "created": str(now_ms)}
    state = {"job": job, "events": [{"id": "msg_" + "0" * 32, "fields": fields}]}
    claim = Claim("0" * 32, "|claim:1", now_ms, state)
    _, events = Store.outbox_state(claim)
    event = events[0]
    record = {"eventId": event.id, "type": event.type, "sequence": event.sequence, "attempt": 1, "time": "-"}

    def ack() -> bytes:
        call = AckCall(claim.member, claim.token, event.id, DeliveryOutcome.DELIVERED, 0, [], [], "{}")
        call.records = [jsonfast.dumps(record).decode()]
        return jsonfast.dumps(call)

    return {
        "read the claimed state": lambda: Store.outbox_state(claim),
        "sign": lambda: signature_headers(event.id, event.body, (secret,), datetime.now(UTC)),
        "build the ack": ack,
    }


def poll_parts(
    member: str, state: dict[str, Any], answer: tuple[int, dict[str, str], bytes], rounds: int = ROUNDS
) -> dict[str, float]:
    """µs per poll of each part a poll cannot skip: ``state`` as a claim returns it (``{monitor: its fields, jobs:
    {id: fields}}``), ``answer`` a monitor's (status, headers, body) as the worker receives it."""
    return {name: timed(call, rounds) for name, call in poll_calls(member, state, answer).items()}


def poll_calls(
    member: str, state: dict[str, Any], answer: tuple[int, dict[str, str], bytes]
) -> dict[str, Callable[[], Any]]:
    """Each part a poll cannot skip (see :func:`poll_parts`); each returns what it made."""
    now_ms = int(time.time() * 1000)
    claim = Claim(member, "|claim:1", now_ms, state)
    monitor, jobs = Store.monitor_state(claim)
    assert jobs is not None
    status, headers, body = answer
    result = classify(status, headers, body)
    policy = PollPolicy.of(Settings())  # the defaults
    rng = random.Random(1)
    plan = plan_poll(result, monitor, jobs, now_ms, policy, rng)

    def write() -> bytes:
        ops = [op.as_json() for op in plan.ops]
        delay_ms = int(plan.delay * 1000)
        return jsonfast.dumps(ApplyPollCall(member, claim.token, delay_ms, plan.monitor_change.fields, ops, len(jobs)))

    return {
        "read the claimed state": lambda: Store.monitor_state(claim),
        "classify the answer": lambda: classify(status, headers, body),
        "plan what follows": lambda: plan_poll(result, monitor, jobs, now_ms, policy, rng),
        "build the write": write,
    }


def save_poll(path: str, member: str, state: dict[str, Any], answer: tuple[int, dict[str, str], bytes]) -> None:
    """A poll's inputs as a file for :func:`count_parts` (another process): the body as Latin-1 text."""
    status, headers, body = answer
    with open(path, "w", encoding="utf-8") as out:
        json.dump({"member": member, "state": state, "answer": [status, headers, body.decode("latin-1")]}, out)


def _load_poll(path: str) -> tuple[str, dict[str, Any], tuple[int, dict[str, str], bytes]]:
    with open(path, encoding="utf-8") as source:
        saved = json.load(source)
    status, headers, body = saved["answer"]
    return saved["member"], saved["state"], (status, headers, body.encode("latin-1"))


def unit_calls(unit: str, body: str, secret: str, count: int) -> dict[str, Callable[[], Any]]:
    """The parts of ``unit``: a registration's for bodies like ``body``, a delivery's for an event body ``body``,
    a poll's for the inputs :func:`save_poll` wrote to the file ``body``."""
    if unit == "registration":
        return registration_calls(body, secret, count)
    if unit == "delivery":
        return delivery_calls(body, secret)
    return poll_calls(*_load_poll(body))


def _toggle_own_counting(on: bool) -> None:
    """Under callgrind (``--instr-atstart=no``): start or stop counting this process's instructions."""
    subprocess.run(  # noqa: S603
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],  # noqa: S607
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    time.sleep(2)  # callgrind reads its command file between blocks of the program: a few ms, given time


def count_parts(unit: str, body: str, secret: str, count: int, *, only: str = "") -> None:
    """Call each part of ``unit`` (registration, delivery, poll: :func:`unit_calls`; ``only``: that part) ``count``
    times with callgrind counting only those calls (tests/bench/instructions.py divides the total by ``count``),
    not the set-up."""
    calls = unit_calls(unit, body, secret, count + 10)
    if only:
        calls = {only: calls[only]}
    for call in calls.values():  # warm: first-call caches and lazy imports are not what a part costs
        call()
    _toggle_own_counting(True)
    for call in calls.values():
        for _ in range(count):
            call()
    _toggle_own_counting(False)
