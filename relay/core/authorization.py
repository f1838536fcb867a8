"""Jobs whose DriveItem request is refused ask the app for a fresh authorization and wait for it: pure, no I/O.

Graph access tokens live 60-90 minutes and a large copy runs for hours, so the token registered with a job
has often expired by the time the copy completes. Instead of ending the job without its DriveItem, relay
records ``job.authorizationRequired`` and waits (``RELAY_AUTHORIZATION_WAIT``) for ``PATCH /v1/jobs/{id}``
with a new ``authorization``, which starts the resolution again at once. A job asks at most
:data:`MAX_ASKS` times; a wait that runs out ends the job as the refused request left it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from relay.core.changes import job_event
from relay.core.events import isoformat
from relay.core.ops import JobOp
from relay.core.schema import EventType, Job, Phase

__all__ = ["MAX_ASKS", "ask_op", "bearer_expired", "is_refusal"]

MAX_ASKS = 3


def bearer_expired(authorization: str | None, now_s: float) -> bool:
    """True when ``authorization`` is ``Bearer <JWT>`` whose ``exp`` claim has passed.

    The claim is read without verifying the token, only as a hint that sending it is pointless; anything
    that is not such a JWT counts as unexpired (the request then decides).
    """
    if not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return False
    payload = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return False
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return False
    return exp <= now_s


def is_refusal(error: dict[str, Any]) -> bool:
    """The DriveItem request answered 401, or was not sent because the token had expired."""
    return error.get("httpStatus") == 401 or error.get("code") == "authorizationExpired"


def ask_op(job: Job, now_ms: int, wait: float, error: dict[str, Any]) -> JobOp | None:
    """The change that records ``job.authorizationRequired`` and starts the wait; None when the job may not ask
    (no wait configured, or it has asked :data:`MAX_ASKS` times already)."""
    asks = job.auth_asks
    if wait <= 0 or asks >= MAX_ASKS:
        return None
    wait_until = now_ms + int(wait * 1000)
    event = job_event(
        EventType.AUTHORIZATION_REQUIRED,
        job,
        job.sequence + 1,
        now_ms,
        job.status,
        job.percentage,
        resourceId=job.resource_id or None,
        httpStatus=error.get("httpStatus"),
        reason="tokenExpired" if error.get("code") == "authorizationExpired" else "unauthorized",
        waitUntil=isoformat(wait_until / 1000),
        ask=asks + 1,
        maxAsks=MAX_ASKS,
    )
    return JobOp.on(
        job,
        phase=Phase.RESOLVING,
        # a PATCH that replaced the token meanwhile makes this ask stale: the new token is tried instead
        expect=Job(authorization=job.authorization),
        set=Job(phase=Phase.AUTHORIZING, auth_asks=asks + 1, auth_wait_until=wait_until, auth_error=json.dumps(error)),
        events=[event],
        wake_ms=wait_until,
    )
