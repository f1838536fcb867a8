"""Real servers for the tests: a webhook receiver that verifies every signature; relay as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook

from relay.core.schema import EventType

TERMINAL = EventType.terminal_types()

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#: the console script of this environment
RELAY = str(Path(sys.executable).parent / "relay")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def relay_env(**settings: str) -> dict[str, str]:
    """The environment for a relay subprocess: this one without RELAY_* and REDIS_URL, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_") and k != "REDIS_URL"}
    env.update(settings)
    return env


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
    #: bodies that do not match the event model of their type (relay/api/schemas.py EVENT_MODELS)
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
        from pydantic import ValidationError

        from relay.api.schemas import EVENT_MODELS
        from relay.core.schema import EventType

        try:
            event = json.loads(body)
            EVENT_MODELS[EventType(event["type"])].model_validate(event)
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


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
