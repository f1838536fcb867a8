"""What the tests share (the one module they import from; tests/conftest.py only makes fixtures of it):
a webhook receiver that verifies every signature, relay's API and workers in this process, relay as a
subprocess, and waiting for conditions."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from standardwebhooks.webhooks import Webhook

from relay.api.app import ROUTES, create_app
from relay.api.openapi import openapi_document
from relay.config.settings import Settings
from relay.core.schema import EventType
from relay.store.embedded import free_port
from workers.main import create_worker

__all__ = [
    "BETA_SECRET",
    "ENCRYPTION_KEY",
    "RELAY",
    "SECRET",
    "TERMINAL",
    "Api",
    "Received",
    "Receiver",
    "Responder",
    "Trap",
    "auth",
    "ensure_stopped",
    "eventually",
    "free_port",
    "loopback_env",
    "read_sse",
    "relay_env",
    "running_api",
    "running_worker",
    "start_relay",
    "two_tenants",
    "wait_http",
    "with_settings",
]

TERMINAL = EventType.terminal_types()

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#: the second tenant's signing secret (two_tenants): the first, alpha, signs with SECRET
BETA_SECRET = "whsec_YmV0YS1vbmx5LXNlY3JldC1vZi10aGUtdGVzdHMh"
#: RELAY_ENCRYPTION_KEY of the tests (a Fernet key)
ENCRYPTION_KEY = "nNqcPCpvx3IZAUiAbCEn2TuLHQ8EVELtuZXhwBEm1rg="
#: the console script of this environment
RELAY = str(Path(sys.executable).parent / "relay")


def relay_env(**settings: str) -> dict[str, str]:
    """The environment for a relay subprocess: this one without RELAY_* and REDIS_URL, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_") and k != "REDIS_URL"}
    env.update(settings)
    return env


def loopback_env(redis_url: str, **settings: str) -> dict[str, str]:
    """A relay subprocess's environment for this machine's own peers (simulator, receivers and Redis on
    127.0.0.1): :func:`relay_env` with the loopback allowances and the test secret, ``settings`` on top."""
    base = {
        "REDIS_URL": redis_url,
        "RELAY_SIGNING_SECRETS": SECRET,
        "RELAY_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "RELAY_MONITOR_ALLOWED_HOSTS": "127.0.0.1",
        "RELAY_ITEM_ALLOWED_HOSTS": "127.0.0.1",
        "RELAY_ACTION_ALLOWED_HOSTS": "127.0.0.1",
        "RELAY_INTERNAL_HOSTS": "127.0.0.1",
        "RELAY_LOG_FORMAT": "json",
        "RELAY_WORKER_METRICS_PORT": "0",
    }
    return relay_env(**{**base, **settings})


def start_relay(command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([RELAY, command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 20.0) -> bytes:
    """GET ``url`` until it answers (the body), failing if ``proc`` exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310
                body: bytes = resp.read()
                return body
        except OSError:
            assert proc.poll() is None, f"the process exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"{url} did not answer within {timeout} s"
            time.sleep(0.1)


def ensure_stopped(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


Responder = Callable[[web.Request, int], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass
class Receiver:
    """Records every POST; verifies it with ``standardwebhooks``; answers with ``responder`` (default 204)."""

    secrets: tuple[str, ...] = (SECRET,)
    responder: Responder | None = None
    received: list[Received] = field(default_factory=list)
    verified: list[Received] = field(default_factory=list)
    bad_signatures: int = 0
    #: bodies that do not match their type's webhook in the OpenAPI document (from relay/api/schemas.py EVENT_MODELS)
    schema_errors: list[str] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rec = Received(dict(request.headers), body, time.monotonic())
        self.received.append(rec)
        self._check_schema(body)
        attempt = len(self.received)
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, dict(request.headers))
            except Exception:
                self.bad_signatures += 1
                break
        else:
            self.verified.append(rec)
        self._changed.set()
        if self.responder is not None:
            result = self.responder(request, attempt)
            if asyncio.iscoroutine(result):
                return await result  # type: ignore[no-any-return]
            return result  # type: ignore[return-value]
        return web.Response(status=204)

    def _check_schema(self, body: bytes) -> None:
        """Each event against its webhook's body schema in the served OpenAPI document."""
        from jsonschema import ValidationError

        try:
            event = json.loads(body)
            _webhook_validator(event["type"]).validate(event)
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            self.schema_errors.append(f"{body[:200]!r}: {exc}")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def events(self, job_id: str | None = None) -> list[dict[str, Any]]:
        out = [r.event for r in self.received]
        return [e for e in out if job_id is None or e["data"]["jobId"] == job_id]

    def delivered_events(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Events whose request was answered 2xx by the default responder (all, when no responder)."""
        return self.events(job_id)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"condition not met within {timeout}s; received {len(self.received)} requests")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))

    def terminal(self, job_id: str) -> dict[str, Any] | None:
        for event in self.events(job_id):
            if event["type"] in TERMINAL:
                return event
        return None


@dataclass
class Trap:
    """A loopback host that answers every request as Graph creating something would (201 with an ``id``) and
    records each one as (method, path as sent, Authorization): where a token must never arrive."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.raw_path, request.headers.get("Authorization", "")))
        return web.json_response({"id": "trapped", "name": "not a DriveItem", "size": 1}, status=201)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


# -- relay in this process: the API on a loopback port, arq workers --------------------------------


class Api:
    """A real relay API on a loopback port and a client session for it."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            body: Any = None
            if text and resp.content_type in ("application/json", "application/problem+json"):
                import json

                body = json.loads(text)
                _check_answer(method, path, resp.status, resp.content_type, body)
            return resp.status, body, resp

    async def create(self, **fields: Any) -> dict[str, Any]:
        status, body, _ = await self.request("POST", "/v1/jobs", json=fields)
        assert status == 201, body
        result: dict[str, Any] = body
        return result


def _check_answer(method: str, path: str, status: int, content_type: str, body: Any) -> None:
    """Answers match the OpenAPI document the API serves: the operation of their path and method documents
    their status and content type, and its JSON schema (references resolved in the document) takes the body."""
    operation = _operation(method, path.split("?", 1)[0])
    if operation is None:  # no such route (404) or method (405): the middleware's problem, like every refusal
        assert status in (404, 405), f"{method} {path} is not in the OpenAPI document but answered {status}"
        document_validator({"$ref": "#/components/schemas/Problem"}).validate(body)
        return
    answer = operation["responses"].get(str(status))
    assert answer is not None, f"{method} {path} answered {status}, which its operation does not document"
    content = answer.get("content", {})
    assert content_type in content, f"{method} {path} {status}: {content_type} is not documented ({list(content)})"
    if "schema" in content[content_type]:
        document_validator(content[content_type]["schema"]).validate(body)


def _operation(method: str, path: str) -> dict[str, Any] | None:
    for pattern, item in _document_paths():
        if pattern.fullmatch(path):
            operation: dict[str, Any] | None = item.get(method.lower())
            return operation
    return None


@functools.cache
def _document_paths() -> list[tuple[re.Pattern[str], dict[str, Any]]]:
    """The document's path templates as patterns, literal paths first (``/v1/jobs`` before ``/v1/jobs/{id}``)."""
    paths = openapi_document(ROUTES)["paths"]
    patterns = [(re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(p))), item) for p, item in paths.items()]
    return sorted(patterns, key=lambda pair: "{" in pair[0].pattern)


@functools.cache
def _webhook_validator(event_type: str) -> Any:
    hook = openapi_document(ROUTES)["webhooks"][event_type]["post"]
    return document_validator(hook["requestBody"]["content"]["application/json"]["schema"])


def document_validator(schema: dict[str, Any]) -> Any:
    """A JSON Schema (2020-12, as OpenAPI 3.1 writes) validator of ``schema``, a part of relay's OpenAPI document,
    whose ``$ref``s resolve in that document: a reference to a component it lacks fails the check."""
    return Draft202012Validator(_in_document(schema), registry=_document_registry())


def _in_document(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _DOCUMENT + v if k == "$ref" and v.startswith("#") else _in_document(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_in_document(item) for item in node]
    return node


_DOCUMENT = "urn:relay:openapi"


@functools.cache
def _document_registry() -> Registry[Any]:
    document = openapi_document(ROUTES)
    return Registry().with_resource(_DOCUMENT, Resource.from_contents(document, default_specification=DRAFT202012))


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{port}", session)
    await runner.cleanup()


#: seconds running_worker waits for a worker's startup (its deps, loops and waker made) before the test fails
WORKER_START_WAIT = 20.0


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, **overrides: Any) -> AsyncIterator[Any]:
    """An arq worker of relay's in this process, yielded once its startup ran (``ctx["deps"]``, its claim loops
    and waker exist: a test may use them at once); closed at the end, its shutdown run whole."""
    worker = create_worker(settings, handle_signals=False, poll_delay=0.05, **overrides)
    started = asyncio.Event()
    worker.ctx["started"] = started
    task = asyncio.create_task(worker.async_run())
    try:
        waiting = asyncio.ensure_future(started.wait())
        await asyncio.wait({task, waiting}, timeout=WORKER_START_WAIT, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if task.done():
            task.result()  # its startup's error, raised here
            raise AssertionError("the worker ended during its startup")
        assert started.is_set(), f"the worker's startup did not finish within {WORKER_START_WAIT} s"
        yield worker
    finally:
        try:
            await worker.close()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.replace(**changes)


def two_tenants(
    settings: Settings,
    *,
    tokens: str = "alpha:token-a,beta:token-b",
    secrets: str = f"alpha:{SECRET},beta:{BETA_SECRET}",
    **changes: Any,
) -> Settings:
    """``settings`` with the API tokens and tenant signing secrets an operator would write in the environment
    (``RELAY_API_TOKENS``, ``RELAY_TENANT_SIGNING_SECRETS``): by default alpha (``token-a``, signing with
    SECRET) and beta (``token-b``, BETA_SECRET)."""
    env = Settings.from_env({"RELAY_API_TOKENS": tokens, "RELAY_TENANT_SIGNING_SECRETS": secrets})
    moved = {name: getattr(env, name) for name in ("api_tokens", "token_names", "tenant_signing_secrets")}
    return settings.replace(**moved, **changes)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def read_sse(resp: aiohttp.ClientResponse, *, until: int | None = None) -> list[dict[str, str]]:
    """SSE messages (field -> value, ``data`` lines joined) until the stream ends or ``until`` arrived."""
    messages: list[dict[str, str]] = []
    current: dict[str, str] = {}
    data: list[str] = []
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "event" in current:
                messages.append({**current, "data": "\n".join(data)})
                if until is not None and len(messages) >= until:
                    break
            current, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            current[name] = value
    return messages
