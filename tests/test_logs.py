"""Logs: JSON lines with job_id bound, and never a monitor URL, token or secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from relay import logs
from relay.simulator import Simulator
from tests.conftest import Api
from tests.helpers import SECRET, Receiver

JOB_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", logging.DEBUG, stream)
    yield stream
    logging.getLogger().handlers.clear()


async def test_no_secret_reaches_a_log_line(
    json_logs: io.StringIO, api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    op = simulator.create(duration=0.3, monitor_style="sharepoint", completion="beta202")
    token = "Bearer sim-token"
    job = await api.create(
        monitorUrl=op.monitor_url,
        callbackUrl=receiver.url,
        driveItemUrl=f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}",
        authorization=token,
        secret=JOB_SECRET,
    )
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    err = json_logs.getvalue()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert lines, "nothing was logged"
    for needle in (op.tempauth, op.id, "sim-token", JOB_SECRET, SECRET, op.monitor_url):
        assert needle not in err, needle
    recorded = [line for line in lines if line["event"] == "event recorded"]
    assert recorded and all(line["job_id"] == job["id"] for line in recorded)
    deliveries = [line for line in lines if line["event"] == "delivery attempt"]
    assert deliveries and all(
        line["job_id"] == job["id"] and line["event_id"].startswith("msg_") for line in deliveries
    )


def test_redact_hides_sensitive_keys() -> None:
    out = logs.redact(None, "info", {"authorization": "Bearer x", "monitor_url": "https://m", "job_id": "j"})
    assert out == {"authorization": "[redacted]", "monitor_url": "[redacted]", "job_id": "j"}
