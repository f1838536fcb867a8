"""Every request example of the README (and of docs/*.md, where the reference moves) runs against the simulator.

An example is a ``POST /v1/jobs`` body: a ```` ```json ```` block with ``callbackUrl`` and ``action`` or
``monitorUrl``, a ```` ```http ```` block ``POST /v1/jobs``, or a ``curl ... /v1/jobs ... -d '...'`` in a
```` ```sh ```` block. It is sent to a real relay as written, except what cannot leave this machine or is a
placeholder: hosts become the simulator's (paths and query strings, Graph's own parameters included, stay),
``monitorUrl`` a fresh simulated monitor, ``authorization`` the simulator's token, ``secret`` a real one and
``callbackUrl`` the test's receiver. The simulator must take the request, relay must track it to the end.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from relay.simulator import Simulator
from tests.helpers import Api, Receiver

ROOT = Path(__file__).parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^[ \t]*```(\w*)[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
_CURL_BODY = re.compile(r"-d\s+'(\{.*?\})'", re.S)


def _request_body(kind: str, text: str) -> dict[str, Any] | None:
    """The ``POST /v1/jobs`` body a fenced block shows, or None when it shows none."""
    raw: str | None = None
    if kind == "json":
        raw = text
    elif kind == "http" and text.lstrip().startswith("POST /v1/jobs"):
        raw = text.split("\n\n", 1)[1] if "\n\n" in text else None
    elif kind == "sh" and "curl" in text and "/v1/jobs" in text:
        match = _CURL_BODY.search(text)
        raw = match.group(1) if match else None
    if raw is None:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None  # an event or an answer abridged with "...": not a request
    if isinstance(body, dict) and "callbackUrl" in body and ("action" in body or "monitorUrl" in body):
        return body
    return None


def examples() -> list[Any]:
    found = []
    for document in DOCUMENTS:
        for number, match in enumerate(_FENCE.finditer(document.read_text()), 1):
            body = _request_body(match.group(1), match.group(2))
            if body is not None:
                found.append(pytest.param(body, id=f"{document.name}-block{number}"))
    return found


EXAMPLES = examples()


def test_the_documents_show_request_examples() -> None:
    """The README's three (a curl, an http block, an action): a move into docs/ must not lose them silently."""
    kinds = {"action" if "action" in p.values[0] else "monitorUrl" for p in EXAMPLES}
    assert len(EXAMPLES) >= 3 and kinds == {"action", "monitorUrl"}, [p.id for p in EXAMPLES]


def _on_simulator(url: str, sim: Simulator) -> str:
    base = URL(sim.base_url)
    return str(
        URL(url.replace("{resourceId}", "RESOURCE_ID"))
        .with_scheme("http")
        .with_host(base.host or "")
        .with_port(base.port)
    ).replace("RESOURCE_ID", "{resourceId}")


def _runnable(body: dict[str, Any], sim: Simulator, receiver: Receiver) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    body["callbackUrl"] = receiver.url
    if "authorization" in body:
        body["authorization"] = "Bearer sim-token"
    if "secret" in body:
        body["secret"] = "whsec_" + "A" * 32
    if "monitorUrl" in body:
        body["monitorUrl"] = sim.create(duration=0.2).monitor_url
    if "driveItemUrl" in body:
        body["driveItemUrl"] = _on_simulator(body["driveItemUrl"], sim)
    if "action" in body:
        body["action"]["url"] = _on_simulator(body["action"]["url"], sim)
    return body


@pytest.mark.parametrize("example", EXAMPLES)
async def test_the_example_runs_against_the_simulator(
    example: dict[str, Any], api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    status, job, _ = await api.request("POST", "/v1/jobs", json=_runnable(example, simulator, receiver))
    assert status == 201, job
    for op in simulator.operations.values():  # an example's copy may take its time (duration=20): finish it now
        op.created = min(op.created, time.monotonic() - op.options.duration)
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None, timeout=10)
    done = receiver.terminal(job["id"])
    assert done is not None and done["type"] == "job.completed", done
