"""Logs: JSON lines with job_id bound, and never a monitor URL, token or secret."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from relay import logs
from relay.api.middlewares import api_middleware
from relay.api.typedefs import SETTINGS
from relay.config.settings import ConfigError, Settings
from relay.simulator import Simulator
from relay.store.jobs import monitor_key
from tests.helpers import SECRET, Api, Receiver, eventually

JOB_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", logging.DEBUG, stream)
    yield stream
    logs.configure("json", logging.WARNING)  # what an unconfigured root logger would show, on stderr


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")  # structlog leaves out a zero fraction


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


def test_own_and_stdlib_lines_are_the_same_json(json_logs: io.StringIO) -> None:
    log = structlog.stdlib.get_logger("relay.test")
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id="j1")
    try:
        log.info("own %s", "line", authorization="Bearer own", n=1)
        log.debug("own debug")
        logging.getLogger("aiohttp.server").warning("stdlib %s", "line", extra={"token": "t"})
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.exception("own failure")
            logging.getLogger("arq.worker").exception("stdlib failure")
    finally:
        structlog.contextvars.clear_contextvars()
    own, debug, stdlib, own_exc, stdlib_exc = _lines(json_logs)
    assert own == {
        "authorization": "[redacted]",
        "n": 1,
        "event": "own line",
        "job_id": "j1",
        "level": "info",
        "logger": "relay.test",
        "timestamp": own["timestamp"],
    }
    assert (debug["event"], debug["level"]) == ("own debug", "debug")
    assert stdlib == {
        "event": "stdlib line",
        "job_id": "j1",
        "level": "warning",
        "logger": "aiohttp.server",
        "timestamp": stdlib["timestamp"],
    }
    for line, name in ((own_exc, "relay.test"), (stdlib_exc, "arq.worker")):
        assert line["level"] == "error" and line["logger"] == name
        assert "ZeroDivisionError: division by zero" in line["exception"]
    assert all(TIMESTAMP.match(line["timestamp"]) for line in (own, debug, stdlib, own_exc, stdlib_exc))
    assert "Bearer own" not in json_logs.getvalue()


async def test_at_info_a_delivered_event_writes_no_line_and_a_failed_attempt_does(
    api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    stream = io.StringIO()
    logs.configure("json", logging.INFO, stream)
    try:
        assert logs.enabled(logging.INFO) and not logs.enabled(logging.DEBUG)
        receiver.responder = lambda _, attempt: web.Response(status=500 if attempt == 1 else 204)
        op = simulator.create(duration=0.2)
        job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None and len(receiver.received) >= 2)

        async def completed_delivered() -> bool:  # recorded: its attempt line would have been written by now
            _, listed, _ = await api.request("GET", f"/v1/jobs/{job['id']}/deliveries")
            return any(d["outcome"] == "delivered" and d["type"] == "job.completed" for d in listed["deliveries"])

        await eventually(completed_delivered)
    finally:
        logs.configure("json", logging.WARNING)
    attempts = [line for line in _lines(stream) if line["event"] == "delivery attempt"]
    assert attempts, "the failed attempt was not logged"
    assert all(line["outcome"] == "failed" and line["http_status"] == 500 for line in attempts)
    assert any(line["event"] == "event recorded" for line in _lines(stream))


def test_reconfiguring_applies_to_loggers_already_used() -> None:
    log = structlog.stdlib.get_logger("relay.test.levels")
    first, second = io.StringIO(), io.StringIO()
    try:
        logs.configure("json", logging.ERROR, first)
        log.info("dropped")
        log.log(logging.WARNING, "dropped too")
        log.error("kept")
        logging.getLogger("relay.test.stdlib").info("dropped as well")
        logs.configure("json", logging.DEBUG, second)
        log.debug("now kept")
        log.log(logging.DEBUG, "kept via log")
    finally:
        logs.configure("json", logging.WARNING)
    assert [line["event"] for line in _lines(first)] == ["kept"]
    assert [line["event"] for line in _lines(second)] == ["now kept", "kept via log"]


def test_console_format() -> None:
    stream = io.StringIO()
    try:
        logs.configure("console", logging.INFO, stream)
        structlog.stdlib.get_logger("relay.test").info("console line", secret="whsec_x", n=2)
        logging.getLogger("aiohttp.access").info("stdlib console line")
    finally:
        logs.configure("json", logging.WARNING)
    out = stream.getvalue()
    assert "console line" in out and "stdlib console line" in out and "relay.test" in out
    assert "whsec_x" not in out and not out.startswith("{")


def test_access_line_has_no_query_string(json_logs: io.StringIO) -> None:
    request = make_mocked_request("GET", "/v1/jobs/abc?wait=5&token=hunter2")
    response = web.Response(status=200, headers={"X-Request-Id": "rid-1"})
    logs.AccessLogger(logs.ACCESS_LOG, "").log(request, response, 0.0123456)
    (line,) = _lines(json_logs)
    assert line == {
        "method": "GET",
        "path": "/v1/jobs/abc",
        "status": 200,
        "duration_ms": 12.35,
        "request_id": "rid-1",
        "event": "request",
        "level": "info",
        "logger": "relay.access",
        "timestamp": line["timestamp"],
    }
    assert "hunter2" not in json_logs.getvalue()


def test_an_access_line_carries_the_context_redacted_and_no_kept_out_value(
    json_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The access line renders itself (relay/logs.py, AccessLogger): what the context holds is still merged and
    redacted, and the configuration's secrets still kept out, as in any line."""
    request = make_mocked_request("POST", "/v1/jobs")
    response = web.Response(status=201, headers={"X-Request-Id": "rid-2"})
    monkeypatch.setattr(logs, "_KEPT_OUT", logs._KEPT_OUT)  # restored after the test
    logs.keep_out(["hunter2-api-token"])
    structlog.contextvars.bind_contextvars(job_id="j9", authorization="Bearer abc", request_id="from-context")
    try:
        logs.AccessLogger(logs.ACCESS_LOG, "").log(request, response, 0.002)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(note="sent hunter2-api-token")
        logs.AccessLogger(logs.ACCESS_LOG, "").log(request, response, 0.002)
    finally:
        structlog.contextvars.clear_contextvars()
    first, second = _lines(json_logs)
    assert (first["job_id"], first["authorization"], first["request_id"]) == ("j9", "[redacted]", "rid-2")
    assert second["note"] == "sent [redacted]" and "hunter2" not in json_logs.getvalue()


def test_an_access_line_in_the_console_format() -> None:
    stream = io.StringIO()
    structlog.contextvars.bind_contextvars(secret="whsec_y")
    try:
        logs.configure("console", logging.INFO, stream)
        request = make_mocked_request("GET", "/v1/jobs/abc")
        logs.AccessLogger(logs.ACCESS_LOG, "").log(request, web.Response(headers={"X-Request-Id": "rid-3"}), 0.001)
    finally:
        structlog.contextvars.clear_contextvars()
        logs.configure("json", logging.WARNING)
    out = stream.getvalue()
    assert "request" in out and "/v1/jobs/abc" in out and "rid-3" in out and "relay.access" in out
    assert "whsec_y" not in out and not out.startswith("{")


def test_access_log_follows_the_level() -> None:
    stream = io.StringIO()
    access = logs.AccessLogger(logs.ACCESS_LOG, "")
    try:
        logs.configure("json", logging.WARNING, stream)
        assert not access.enabled
        access.log(make_mocked_request("GET", "/healthz"), web.Response(), 0.001)
    finally:
        logs.configure("json", logging.WARNING)
    assert stream.getvalue() == ""
    logs.configure("json", logging.INFO, stream)
    try:
        assert access.enabled
    finally:
        logs.configure("json", logging.WARNING)


async def test_access_log_under_aiohttp(json_logs: io.StringIO) -> None:
    async def hello(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[api_middleware])
    app[SETTINGS] = Settings.from_env({})
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log_class=logs.AccessLogger, access_log=logs.ACCESS_LOG)  # as relay/cli/dev.py
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/hello?monitorUrl=https%3A%2F%2Fsecret.example"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200
            rid = resp.headers["X-Request-Id"]
    finally:
        await runner.cleanup()
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    (line,) = [line for line in _lines(json_logs) if line["logger"] == "relay.access"]
    assert (line["method"], line["path"], line["status"], line["request_id"]) == ("GET", "/hello", 200, rid)
    assert line["duration_ms"] >= 0
    assert "secret.example" not in json_logs.getvalue()


async def test_the_api_middleware_answers_a_crash_with_500_and_logs_its_traceback(json_logs: io.StringIO) -> None:
    async def crash(_: web.Request) -> web.Response:
        raise RuntimeError("boom in a handler")

    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")  # a redirect is not a failure: it goes out as it is

    app = web.Application(middlewares=[api_middleware])
    app[SETTINGS] = Settings.from_env({})
    app.router.add_get("/crash", crash)
    app.router.add_get("/moved", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/crash", headers={"X-Request-Id": "rid-crash"}) as resp:
                assert resp.status == 500
                assert resp.content_type == "application/problem+json"
                assert resp.headers["X-Request-Id"] == "rid-crash"
                assert (await resp.json())["detail"] == "the error was logged"
            async with session.get(f"{base}/moved", allow_redirects=False) as resp:
                assert (resp.status, resp.headers["Location"]) == (302, "/elsewhere")
    finally:
        await runner.cleanup()
    (line,) = [line for line in _lines(json_logs) if line["event"] == "unhandled error"]
    assert (line["level"], line["path"], line["request_id"]) == ("error", "/crash", "rid-crash")
    assert "RuntimeError: boom in a handler" in line["exception"]


@pytest.mark.parametrize(("raw", "expected"), [(None, True), ("", True), ("on", True), ("OFF", False), ("0", False)])
def test_access_log_setting(raw: str | None, expected: bool) -> None:
    env = {} if raw is None else {"RELAY_ACCESS_LOG": raw}
    assert Settings.from_env(env).access_log is expected


def test_access_log_setting_refuses_nonsense() -> None:
    with pytest.raises(ConfigError, match="RELAY_ACCESS_LOG"):
        Settings.from_env({"RELAY_ACCESS_LOG": "sometimes"})


async def test_each_stretch_of_bare_5xx_is_one_warning_without_the_monitor_url(
    json_logs: io.StringIO, api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    running = {"status": 202, "body": {"operation": "ItemCopy", "percentageComplete": 10.0, "status": "inProgress"}}
    done = {"status": 202, "body": {"percentageComplete": 100.0, "resourceId": "01DONE", "status": "completed"}}
    script = [{"status": 500}, {"status": 500, "body": "busy"}, running, {"status": 503}, {"status": 502}, done]
    op = simulator.create(script=script, monitor_style="sharepoint")
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    assert receiver.terminal(job["id"])["type"] == "job.completed"  # type: ignore[index]
    text = json_logs.getvalue()
    warnings = [line for line in _lines(json_logs) if line["level"] == "warning"]
    assert [w["http_status"] for w in warnings] == [500, 503]
    assert all("5xx" in w["event"] and w["monitor"] for w in warnings)
    for needle in (op.monitor_url, op.tempauth, op.id):
        assert needle not in text


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_traceback_shows_no_local_and_no_configured_secret(fmt: str) -> None:
    """The console format used to render a traceback with rich's locals: a token held by any frame was shown."""
    stream = io.StringIO()
    logs.configure(fmt, logging.INFO, stream)
    logs.keep_out([SECRET, "redis-password-1"])
    graph_token = ""
    try:
        graph_token = f"Bearer {secrets.token_hex(12)}"  # a frame's local, as a decrypted authorization is
        signing_secrets = (SECRET,)
        try:
            raise ValueError(f"a header echoed in a message: {signing_secrets[0]} redis-password-1 {len(graph_token)}")
        except ValueError:
            structlog.get_logger("relay.test").exception("member failed")
    finally:
        logs.keep_out(())
        logs.configure("json", logging.WARNING)
    text = stream.getvalue()
    assert "ValueError" in text and "member failed" in text
    assert graph_token not in text and graph_token[7:] not in text, text
    assert SECRET not in text and "redis-password-1" not in text, text
    assert "[redacted]" in text


def test_secrets_are_kept_out_of_lines_in_their_json_spelling() -> None:
    stream = io.StringIO()
    logs.configure("json", logging.INFO, stream)
    password = 'pa"ss\\word/1'
    logs.keep_out([password, "abc"])  # too short to look for: it would blank every word holding it
    try:
        structlog.get_logger("relay.test").info("connect failed", error=f"AUTH {password} refused", note="abcdef")
    finally:
        logs.keep_out(())
        logs.configure("json", logging.WARNING)
    line = json.loads(stream.getvalue())
    assert line["error"] == "AUTH [redacted] refused" and line["note"] == "abcdef"


async def test_a_polls_warnings_name_its_own_monitor_when_polls_are_written_together(
    json_logs: io.StringIO, api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    """A poll's follow-up runs in the context of the batch that wrote it (another runner's): its lines name their
    monitor themselves, so two monitors answering 5xx at once each get their own warnings."""
    done = {"status": 202, "body": {"percentageComplete": 100.0, "resourceId": "01DONE", "status": "completed"}}
    script = [{"status": 500}, {"status": 503}, {"status": 502}, done]
    ops = [simulator.create(script=script, monitor_style="sharepoint") for _ in range(4)]
    jobs = await asyncio.gather(*(api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url) for op in ops))
    await receiver.wait_for(lambda: all(receiver.terminal(job["id"]) is not None for job in jobs))
    warnings = [line for line in _lines(json_logs) if line["level"] == "warning" and "5xx" in line["event"]]
    named = sorted(w["monitor"] for w in warnings)
    assert named == sorted(monitor_key(op.monitor_url)[:12] for op in ops)  # one stretch each, each its own
