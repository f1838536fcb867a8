"""Worker-side fuzzing: hypothesis-drawn peer answers through a real ``relay dev`` (API and worker).

Each example registers a job whose monitor, DriveItem host and callback are a loopback peer answering what
hypothesis drew: random JSON, wrong types, lone surrogates (``\\ud800``), huge numbers, deep nesting, bytes that
are not UTF-8, odd headers (``Location``, ``Retry-After``), any status. A monitor answers its drawn answers, then
``completed``; so every job must end (or its peer is still answering, which the drawn answers bound). Some
examples start an ``action`` instead, whose Graph answer is drawn: the API must answer it without a 5xx of its
own (502/503/504 say Graph failed). The jobs run side by side; :func:`test_every_job_ended` then waits for all of
them, checks that none needed the backstop (``internalError``) and that the log holds no traceback.

The examples drawn: ``RELAY_FUZZ_EXAMPLES`` (15 in ``make test``, 500 in ``make fuzz``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import ENCRYPTION_KEY, RELAY, SECRET, ensure_stopped, free_port, relay_env, wait_http

EXAMPLES = int(os.environ.get("RELAY_FUZZ_EXAMPLES", "15"))
TOKEN = "worker-fuzz-token"

Answer = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body


@dataclass
class Script:
    monitor: list[Answer]
    item: Answer
    callback: Answer
    polls: int = 0


@dataclass
class Peer:
    """A monitor, DriveItem host, callback and Graph action endpoint on loopback, scripted per job."""

    scripts: dict[str, Script] = field(default_factory=dict)
    actions: dict[str, Answer] = field(default_factory=dict)
    base: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, path: str) -> Answer:
        parts = path.split("?", 1)[0].strip("/").split("/")
        with self.lock:
            if parts[0] == "m":  # /m/<name>
                script = self.scripts[parts[1]]
                script.polls += 1
                if script.polls <= len(script.monitor):
                    return script.monitor[script.polls - 1]
                return 200, [], json.dumps({"status": "completed", "resourceId": "01ITEM"}).encode()
            if parts[0] == "c":  # /c/<name>: the callback
                return self.scripts[parts[1]].callback
            if parts[:2] == ["v1.0", "drives"] and parts[-1] == "copy":  # /v1.0/drives/<name>/items/<id>/copy
                status, headers, body = self.actions[parts[2]]
                if status == 202 and not headers:  # a well-formed start, so that some action jobs run
                    headers = [("Location", f"{self.base}/m/{parts[2]}")]
                return status, headers, body
            if parts[:2] == ["v1.0", "drives"]:  # /v1.0/drives/<name>/items/<id>: the DriveItem
                return self.scripts[parts[2]].item
        return 404, [], b""


def _handler(peer: Peer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, headers, body = peer.answer(self.command, self.path)
            self.send_response_only(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _serve

        def log_message(self, *_: Any) -> None:
            return None

    return Handler


# -- what a peer may answer ----------------------------------------------------------------------------------------

#: any code point, lone surrogates included (hypothesis leaves them out by default)
_text = st.text(st.characters(exclude_categories=()), max_size=40)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**200),  # over 64 bits: orjson refuses, Lua's cjson rounds
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)
_status_words = st.sampled_from(
    ["notStarted", "inProgress", "completed", "failed", "running", "succeeded", "deletePending", "unknownFutureValue"]
)
_async_status = st.fixed_dictionaries(
    {},
    optional={
        "status": st.one_of(_status_words, _text, st.integers(), st.lists(_text, max_size=2)),
        "percentageComplete": st.one_of(st.floats(), st.integers(), st.integers(2**64, 2**80), _text, st.none()),
        "operation": st.one_of(_text, st.integers()),
        "resourceId": st.one_of(_text, st.just(".."), st.just("a/b"), st.integers(), st.none()),
        "resourceLocation": st.one_of(_text, st.just("https://127.0.0.1/drives/x/items/01%2F..")),
        "error": st.one_of(_text, st.dictionaries(_text, _json, max_size=3), st.fixed_dictionaries({"code": _text})),
        "id": _text,
        "name": _text,
    },
)
_drive_item = st.fixed_dictionaries(
    {"id": st.one_of(_text, st.integers())},
    optional={"name": _text, "size": st.one_of(st.integers(), st.integers(2**64, 2**90), _text), "file": _json},
)


def _ascii(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()  # lone surrogates as \\ud800 escapes, NaN as NaN


_nested = st.integers(10, 5_000).map(lambda n: b'{"status": "inProgress", "x": ' + b"[" * n + b"]" * n + b"}")
_bodies = st.one_of(
    _async_status.map(_ascii),
    _drive_item.map(_ascii),
    _json.map(_ascii),
    _nested,
    st.binary(max_size=64),  # not JSON, not UTF-8
    st.sampled_from(
        [
            b'{"status": "inProgress", "percentageComplete": NaN}',
            b'{"status": "inProgress", "percentageComplete": 1e999}',
            b'{"status": "completed", "resourceId": 123456789012345678901234567890}',
            b'{"status": "inProgress\\ud800", "percentageComplete": 5}',
            b'{"status": "completed", "resourceId": "\\udfff"}',
            b"",
        ]
    ),
)
#: header values: latin-1 (bytes over 0x7f read back as lone surrogates by aiohttp), never CR, LF or NUL
_header_text = st.text(st.characters(min_codepoint=1, max_codepoint=255, exclude_characters="\r\n"), max_size=60)
_headers = st.lists(
    st.tuples(
        st.sampled_from(["Location", "Retry-After", "X-Odd", "Operation-Location"]),
        st.one_of(
            _header_text,
            st.sampled_from(["1", "0", "-5", "1.5", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "x"]),
        ),
    ),
    max_size=3,
)
_statuses = st.one_of(
    st.sampled_from([200, 201, 202, 303, 400, 401, 403, 404, 410, 429, 500, 503]), st.integers(100, 599)
)
_answers = st.tuples(_statuses, _headers, _bodies).filter(lambda a: a[0] not in (100, 101, 102, 103, 204, 304))


def _keep_retry_after_short(answer: Answer) -> Answer:
    """Retry-After values that parse are at most 2 s: a peer may make a job wait (up to an hour), not this test."""
    status, headers, body = answer
    kept = []
    for name, value in headers:
        if name == "Retry-After":
            try:
                if float(value) > 2:
                    value = "2"
            except ValueError:
                pass
        kept.append((name, value))
    return status, kept, body


_scripts = st.builds(
    Script,
    monitor=st.lists(_answers.map(_keep_retry_after_short), max_size=4),
    item=_answers.map(_keep_retry_after_short),
    callback=_answers.map(_keep_retry_after_short),
)


# -- the run -------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    api: str
    peer: Peer
    log: Any
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> its script's name
    refused_actions: list[tuple[int, Answer]] = field(default_factory=list)


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    peer = Peer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(peer))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    peer.base = f"http://127.0.0.1:{server.server_address[1]}"
    port = free_port()
    env = relay_env(
        RELAY_PORT=str(port),
        RELAY_API_TOKENS=TOKEN,
        RELAY_SIGNING_SECRETS=SECRET,
        RELAY_ENCRYPTION_KEY=ENCRYPTION_KEY,
        RELAY_LOG_FORMAT="json",
        RELAY_MONITOR_ALLOWED_HOSTS="127.0.0.1",
        RELAY_ITEM_ALLOWED_HOSTS="127.0.0.1",
        RELAY_ACTION_ALLOWED_HOSTS="127.0.0.1",
        RELAY_INTERNAL_HOSTS="127.0.0.1",
        RELAY_POLL_INITIAL_INTERVAL="0.05",
        RELAY_POLL_MAX_INTERVAL="0.3",
        RELAY_POLL_MAX_INVALID="3",
        RELAY_POLL_MAX_ERROR_TIME="5",
        RELAY_DELIVERY_SCHEDULE="0,0.1,0.2",
        RELAY_REQUEST_TIMEOUT="2",
        RELAY_AUTHORIZATION_WAIT="0",
        RELAY_TENANT_MAX_ACTIVE_JOBS="100000",
        RELAY_TENANT_REGISTRATIONS_PER_SECOND="100000",
    )
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([RELAY, "dev"], env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", proc)
            yield Run(f"http://127.0.0.1:{port}", peer, log)
        finally:
            # SIGTERM, so relay dev stops the Redis it started (a SIGKILL would leave that redis-server behind)
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            ensure_stopped(proc)
            server.shutdown()
            server.server_close()


def _call(method: str, url: str, body: Any = None) -> tuple[int, Any, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - the test's own loopback API
        url, data=data, method=method, headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read() or b"null"), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers.get("Content-Type", "")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(script=_scripts, action=st.one_of(st.none(), _answers))
def test_peer_answers_are_taken_without_a_5xx(run: Run, script: Script, action: Answer | None) -> None:
    name = f"s{len(run.peer.scripts)}"
    run.peer.scripts[name] = script
    base = run.peer.base
    body: dict[str, Any] = {
        "callbackUrl": f"{base}/c/{name}",
        "driveItemUrl": f"{base}/v1.0/drives/{name}/items/{{resourceId}}",
        "authorization": "Bearer fuzz-graph-token",
    }
    if action is None:
        body["monitorUrl"] = f"{base}/m/{name}"
    else:
        run.peer.actions[name] = action
        body["action"] = {"url": f"{base}/v1.0/drives/{name}/items/01SRC/copy", "body": {"name": "c.docx"}}
    status, answer, content_type = _call("POST", f"{run.api}/v1/jobs", body)
    assert status != 500 and (status < 500 or status in (502, 503, 504)), (status, answer, action)
    if status >= 400:
        assert content_type.startswith("application/problem+json")
        run.refused_actions.append((status, action))  # type: ignore[arg-type]
        return
    assert status == 201, answer
    run.jobs[answer["id"]] = name


def test_every_job_ended(run: Run) -> None:
    assert run.jobs, "no job was registered"
    deadline = time.monotonic() + 90
    left = dict(run.jobs)
    views: dict[str, Any] = {}
    while left and time.monotonic() < deadline:
        for job_id in list(left):
            status, view, _ = _call("GET", f"{run.api}/v1/jobs/{job_id}")
            assert status == 200, (status, view)
            views[job_id] = view
            if view["status"] in ("completed", "failed", "cancelled"):
                del left[job_id]
        time.sleep(0.2)
    stuck = {job_id: (views.get(job_id), run.peer.scripts[name]) for job_id, name in left.items()}
    assert not stuck, f"jobs that did not end: {stuck}"
    parked = [v for v in views.values() if (v.get("error") or {}).get("code") == "internalError"]
    assert not parked, f"jobs the backstop had to park: {parked}"
    run.log.seek(0)
    logged = run.log.read().decode(errors="replace")
    tracebacks = [line for line in logged.splitlines() if '"exception"' in line or "Traceback" in line]
    assert not tracebacks, tracebacks[:3]
