from __future__ import annotations

from datetime import datetime, timedelta, timezone

from standardwebhooks.webhooks import Webhook

from relay.core.events import build_event
from relay.core.signing import signature_headers

A = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
B = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


def test_every_secret_signs_and_any_verifies() -> None:
    body = build_event(
        "job.progress",
        job_id="j",
        sequence=1,
        operation="ItemCopy",
        status="inProgress",
        percentage=10.0,
        metadata=None,
        timestamp=0,
    )
    headers = signature_headers("msg_1", body, [A, B])
    assert headers["webhook-id"] == "msg_1"
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (A, B):
        assert Webhook(secret).verify(body, headers)["data"]["sequence"] == 1


def test_timestamp_is_utc_whatever_zone_the_clock_is_in() -> None:
    local = datetime.now(timezone(timedelta(hours=5)))
    headers = signature_headers("msg_2", "{}", [A], local)
    assert headers["webhook-timestamp"] == str(int(local.timestamp()))
    Webhook(A).verify("{}", headers)
