"""No secret in any log line, in either format, under every hostile input of issue 26.

A real ``relay dev`` (API and worker in one process) with two tenants, a Redis that wants a password, a
credential and a metrics token, against a fake Graph on loopback; every kind of input that used to end in a
traceback is sent; then everything relay wrote (stderr and stdout) is scanned for every secret it knows. The
console format used to render each traceback with its frames' locals: the signing secrets, a job's decrypted
Graph token, the request body with its authorization. Both formats must also be free of tracebacks: each of
these inputs is now refused at registration (422) or recorded as the peer's fault, never an exception.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis import Redis as SyncRedis

from relay.store.embedded import EmbeddedRedis, free_port
from tests.helpers import RELAY, Receiver, ensure_stopped, loopback_env, wait_http


def _secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def _whsec() -> str:
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Secrets:
    """Every secret the run gives relay, by what it is."""

    def __init__(self) -> None:
        self.signing = _whsec()
        self.alpha_signing = _whsec()
        self.beta_signing = _whsec()
        self.token_a = _secret("tok-alpha-")
        self.token_b = _secret("tok-beta-")
        self.metrics_token = _secret("metrics-")
        self.redis_password = _secret("redis-pw-")
        self.credential_secret = _secret("client-secret-")
        self.encryption_key = "nNqcPCpvx3IZAUiAbCEn2TuLHQ8EVELtuZXhwBEm1rg="
        self.job_secret_a = _whsec()
        self.job_secret_b = _whsec()
        self.graph = {name: _secret(f"graph-{name}-") for name in "abcdef"}
        self.tempauth = {name: _secret(f"tempauth-{name}-") for name in ("done", "surrogate", "action")}

    def all(self) -> dict[str, str]:
        found = {k: v for k, v in vars(self).items() if isinstance(v, str)}
        found.update({f"graph {k}": v for k, v in self.graph.items()})
        found.update({f"tempauth {k}": v for k, v in self.tempauth.items()})
        return found


class FakeGraph:
    """Monitors, DriveItems and a copy action, answering with lone surrogates where a peer could."""

    def __init__(self, keys: Secrets) -> None:
        self.keys = keys
        self.base = ""
        self.monitor_urls: list[str] = []

    def monitor(self, name: str) -> str:
        url = f"{self.base}/monitor/{name}?tempauth={self.keys.tempauth[name]}"
        self.monitor_urls.append(url)
        return url

    async def _monitor(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "surrogate":  # in progress, its operation not text: "\ud800" in the JSON
            body = json.dumps({"status": "inProgress", "percentageComplete": 5, "operation": "copy\ud800"})
            return web.Response(status=202, text=body, content_type="application/json")
        body = json.dumps({"status": "completed", "percentageComplete": 100, "resourceId": "01ITEM"})
        return web.Response(status=200, text=body, content_type="application/json")

    async def _item(self, request: web.Request) -> web.Response:
        body = json.dumps({"id": request.match_info["id"], "name": "report\ud800.docx", "size": 1})
        return web.Response(status=200, text=body, content_type="application/json")

    async def _copy(self, _: web.Request) -> web.Response:
        return web.Response(status=202, headers={"Location": self.monitor("action")})


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph(Secrets())
    app = web.Application()
    app.router.add_get("/monitor/{name}", fake._monitor)
    app.router.add_get("/v1.0/me/drive/items/{id}", fake._item)
    app.router.add_post("/v1.0/me/drive/items/{id}/copy", fake._copy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    fake.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


@pytest.fixture
def guarded_redis(graph: FakeGraph) -> Any:
    server = EmbeddedRedis()
    server.start()
    client = SyncRedis(port=server.port)
    client.config_set("requirepass", graph.keys.redis_password)
    client.close()  # type: ignore[no-untyped-call]
    yield f"redis://:{graph.keys.redis_password}@127.0.0.1:{server.port}/0"
    server.cleanup()


async def _register(session: aiohttp.ClientSession, base: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(f"{base}/v1/jobs", json=body, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json(content_type=None)


@pytest.mark.parametrize("fmt", ["console", "json"])
async def test_no_secret_and_no_traceback_in_either_log_format_under_hostile_input(
    fmt: str, graph: FakeGraph, guarded_redis: str, receiver: Receiver
) -> None:
    keys = graph.keys
    receiver.secrets = ()  # two tenants and job secrets: signatures are test_tenants.py's business
    credential = {
        "backup": {
            "type": "clientSecret",
            "tenantId": "00000000-0000-0000-0000-000000000001",
            "clientId": "00000000-0000-0000-0000-000000000002",
            "clientSecret": keys.credential_secret,
            "tenants": ["alpha"],
            "itemHosts": ["127.0.0.1"],
        }
    }
    port = free_port()
    env = loopback_env(
        guarded_redis,
        RELAY_LOG_FORMAT=fmt,
        RELAY_PORT=str(port),
        RELAY_SIGNING_SECRETS=keys.signing,
        RELAY_ENCRYPTION_KEY=keys.encryption_key,
        RELAY_API_TOKENS=f"alpha:{keys.token_a},beta:{keys.token_b}",
        RELAY_TENANT_SIGNING_SECRETS=f"alpha:{keys.alpha_signing},beta:{keys.beta_signing}",
        RELAY_METRICS_TOKEN=keys.metrics_token,
        RELAY_CREDENTIALS=json.dumps(credential),
        RELAY_POLL_INITIAL_INTERVAL="0.05",
        RELAY_POLL_MAX_INTERVAL="0.3",
        RELAY_DELIVERY_SCHEDULE="0,0.1,0.2",
        RELAY_REQUEST_TIMEOUT="2",
    )
    with tempfile.TemporaryFile() as out:
        await _run(env, out, port, graph, receiver, keys)


def _start(env: dict[str, str], out: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([RELAY, "dev"], env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603


async def _run(env: dict[str, str], out: Any, port: int, graph: FakeGraph, receiver: Receiver, keys: Secrets) -> None:
    proc = _start(env, out)
    base = f"http://127.0.0.1:{port}"
    item_url = f"{graph.base}/v1.0/me/drive/items/{{resourceId}}"
    copy = {"url": f"{graph.base}/v1.0/me/drive/items/01SRC/copy", "body": {"name": "copy.docx"}}
    try:
        await asyncio.to_thread(wait_http, f"{base}/readyz", proc)
        async with aiohttp.ClientSession() as session:
            a, b = keys.token_a, keys.token_b
            # what relay takes: a DriveItem whose name holds a lone surrogate, a monitor answer holding one
            status, item_job = await _register(
                session,
                base,
                a,
                {
                    "monitorUrl": graph.monitor("done"),
                    "callbackUrl": receiver.url,
                    "driveItemUrl": item_url,
                    "authorization": f"Bearer {keys.graph['a']}",
                    "secret": keys.job_secret_a,
                },
            )
            assert status == 201, item_job
            status, progress_job = await _register(
                session,
                base,
                b,
                {"monitorUrl": graph.monitor("surrogate"), "callbackUrl": receiver.url, "secret": keys.job_secret_b},
            )
            assert status == 201, progress_job
            status, action_job = await _register(
                session,
                base,
                b,
                {"action": copy, "callbackUrl": receiver.url, "authorization": f"Bearer {keys.graph['f']}"},
            )
            assert status == 201, action_job
            # what relay refuses at registration, naming the field (each used to be taken, or answered 500)
            refused = [
                (a, {"monitorUrl": graph.monitor("done"), "callbackUrl": f"http://{'a' * 64}.example.com/h"}),
                (
                    a,
                    {
                        "monitorUrl": graph.monitor("done"),
                        "callbackUrl": receiver.url,
                        "driveItemUrl": item_url,
                        "authorization": f"Bearer {keys.graph['b']}\r\nX-Injected: 1",
                    },
                ),
                (b, {"action": copy, "callbackUrl": receiver.url, "authorization": f"Bearer {keys.graph['c']}\x00"}),
                (
                    b,
                    {
                        "action": {**copy, "headers": {"Prefer": "respond-async\x01"}},
                        "callbackUrl": receiver.url,
                        "authorization": f"Bearer {keys.graph['d']}",
                    },
                ),
            ]
            statuses = [(await _register(session, base, token, body))[0] for token, body in refused]
            stuck: AssertionError | None = None
            try:
                await receiver.wait_for(
                    lambda: (
                        all(receiver.terminal(j["id"]) for j in (item_job, action_job))
                        and bool(receiver.events(progress_job["id"]))
                    ),
                    timeout=20,
                )
            except AssertionError as exc:  # the log is scanned all the same: it says why
                stuck = exc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                ensure_stopped(proc)
        out.seek(0)
        logged = out.read().decode(errors="replace")
    fmt = env["RELAY_LOG_FORMAT"]
    found = {name: value for name, value in keys.all().items() if value in logged}
    found.update({f"monitor URL {url}": url for url in graph.monitor_urls if url in logged})
    assert not found, f"secrets in the {fmt} log: {sorted(found)}"
    assert "Traceback" not in logged and '"exception"' not in logged, logged[-3000:]
    assert statuses == [422, 422, 422, 422]
    assert stuck is None, stuck
    item = receiver.terminal(item_job["id"])
    assert item is not None and item["data"]["driveItem"]["name"] == "report\ufffd.docx"
    assert "relay dev stopped" in logged  # what was scanned is the whole run
