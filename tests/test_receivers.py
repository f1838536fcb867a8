"""The receivers of docs/receivers.md, each run exactly as written against real signed events from relay.

Each snippet runs as a process of its own (Python, ``node``, ``go run``) with ``RELAY_WEBHOOK_SECRET`` and
``PORT``; relay tracks a copy on the simulator with it as the callback. Every event must be delivered (2xx),
handled once (the snippet prints ``type jobId sequence``), and a tampered event refused with 401. A stack
whose runtime is missing is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from markdown_it import MarkdownIt

from relay.simulator import Simulator
from tests.helpers import SECRET, Api, eventually, free_port

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "tests" / "receivers"


@dataclass(frozen=True)
class Stack:
    heading: str
    language: str
    file: str
    command: tuple[str, ...]


STACKS = {
    "aiohttp": Stack("Python, aiohttp", "python", "receiver.py", (sys.executable, "receiver.py")),
    "fastapi": Stack("Python, FastAPI", "python", "receiver.py", (sys.executable, "receiver.py")),
    "flask": Stack("Python, Flask", "python", "receiver.py", (sys.executable, "receiver.py")),
    "express": Stack("Node.js, Express", "javascript", "receiver.js", ("node", "receiver.js")),
    "go": Stack("Go, net/http", "go", "main.go", ("go", "run", ".")),
}


def snippet(heading: str, language: str) -> str:
    """The first ``language`` code block under the heading ``## {heading}`` of docs/receivers.md."""
    tokens = MarkdownIt("commonmark").parse((ROOT / "docs" / "receivers.md").read_text())
    under = False
    for opening, inline in pairwise(tokens):
        if opening.type == "heading_open":
            under = inline.content == heading
        elif under and opening.type == "fence" and opening.info.strip() == language:
            return opening.content
    raise AssertionError(f"no {language} block under '## {heading}' in docs/receivers.md")


def _node_modules() -> Path:
    """tests/receivers/node_modules from the project's package-lock.json (``npm ci`` when missing or stale)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the Express receiver is not run")
    modules = NODE_DIR / "node_modules"
    installed = modules / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"],  # noqa: S607
            cwd=NODE_DIR,
            check=True,
            timeout=300,
        )
    return modules


def _prepare(name: str, stack: Stack, folder: Path) -> dict[str, str]:
    """Write the snippet into ``folder``; the extra environment its runtime needs."""
    (folder / stack.file).write_text(snippet(stack.heading, stack.language))
    if name == "express":
        return {"NODE_PATH": str(_node_modules())}
    if name == "go":
        if shutil.which("go") is None:
            pytest.skip("go is not installed: the Go receiver stays marked untested in docs/receivers.md")
        for args in (["go", "mod", "init", "receiver"], ["go", "mod", "tidy"]):
            subprocess.run(args, cwd=folder, check=True, timeout=300)  # noqa: S603
    return {}


@pytest.fixture
def receiver_process(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    name: str = request.param
    stack = STACKS[name]
    env = {**os.environ, **_prepare(name, stack, tmp_path), "RELAY_WEBHOOK_SECRET": SECRET, "PORT": str(free_port())}
    proc = subprocess.Popen(  # noqa: S603
        stack.command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_listening(int(env["PORT"]), proc)
        yield f"http://127.0.0.1:{env['PORT']}/hooks/relay", proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the receiver exited: {proc.stdout.read() if proc.stdout else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the receiver did not listen in time")


@pytest.mark.parametrize("receiver_process", list(STACKS), indirect=True)
async def test_the_snippet_verifies_and_handles_every_event_once(
    receiver_process: tuple[str, subprocess.Popen[str]], api: Api, simulator: Simulator, worker: Any
) -> None:
    url, proc = receiver_process
    op = simulator.create(duration=0.6)
    job = await api.create(
        monitorUrl=op.monitor_url,
        callbackUrl=url,
        driveItemUrl=f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}",
        authorization="Bearer sim-token",
    )

    async def all_delivered() -> bool:
        _, record, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
        states = [event["state"] for event in record["events"]]
        return bool(states) and record["events"][-1]["type"] == "job.completed" and "pending" not in states

    await eventually(all_delivered, timeout=30)
    _, record, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
    delivered = [e for e in record["events"] if e["state"] == "delivered"]
    assert [e["state"] for e in record["events"] if e not in delivered] == ["superseded"] * (
        len(record["events"]) - len(delivered)
    ), record
    assert all(attempt["outcome"] in ("delivered", "superseded") for attempt in record["deliveries"]), record

    last = await _signed_from_stream(api, job["id"])
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=last["data"], headers=last["headers"]) as resp:
            assert resp.status in (200, 204)  # a retry of an event already handled: accepted, not handled again
        tampered = last["data"].replace(b'"completed"', b'"failed"', 1)
        async with session.post(url, data=tampered, headers=last["headers"]) as resp:
            assert resp.status == 401

    proc.terminate()
    out, _ = await asyncio.to_thread(proc.communicate, timeout=10)
    handled = [line.split() for line in out.splitlines() if line.startswith("job.")]
    assert handled == [[e["type"], job["id"], str(e["sequence"])] for e in delivered], out


async def _signed_from_stream(api: Api, job_id: str) -> dict[str, Any]:
    """The job's final event as relay signs it, read from its Server-Sent Events stream."""
    async with api.session.get(f"{api.base}/v1/jobs/{job_id}/events") as resp:
        text = await resp.text()
    frames = [frame for frame in text.split("\n\n") if "data: " in frame]
    fields = dict(line.split(": ", 1) for line in frames[-1].splitlines() if ": " in line)
    headers = {name: fields[name] for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    return {"data": fields["data"].encode(), "headers": {**headers, "Content-Type": "application/json"}}
