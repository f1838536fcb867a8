"""The sidecar imports only what it uses: a running ``relay serve`` and ``relay worker`` (started, ready, at
rest) never load the CLI's rich, azure-identity (no ``RELAY_CREDENTIALS``), the simulator, cryptography (until a
value is sealed or opened), or, in the worker, aiohttp's server and pydantic; ``relay serve`` loads pydantic, its
request models and the OpenAPI document's with the first request that needs them, not at start.
Each such package is megabytes resident in every replica (docs/performance.md, "Memory").

Python's own record of a process's imports (``PYTHONPROFILEIMPORTTIME``: one line per module imported, on
stderr) is read from the real processes, so whatever their start-up runs counts, not only their entry modules.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from relay.api.app import ROUTES
from relay.api.openapi import openapi_document
from relay.store.embedded import EmbeddedRedis
from tests.helpers import RELAY, ensure_stopped, free_port, loopback_env

#: modules neither process may load when no credential is configured (the CLI's tables, the token library)
NEVER = (
    "rich.console",
    "rich.text",
    "azure.core",
    "azure.identity",
    "msal",
    "requests",
    "relay.simulator",
    "relay.cli.demo",
    # sealing's library (its Rust extension ~8.5 MiB): imported by the first value sealed or opened, no sooner
    "cryptography.hazmat.bindings._rust",
    "cryptography.fernet",
    # the settings are relay's own dataclass read by relay's own parsing (pydantic-settings: ~1 MiB)
    "pydantic_settings",
    "dotenv",
    # structlog's deprecated threadlocal module's optional import (playwright installs greenlet): hidden from it
    "greenlet._greenlet",
    # the credential specs' pydantic models: only where RELAY_CREDENTIALS holds some
    "relay.config.credentials",
    "tomllib",
)
#: and the worker serves no HTTP (its metrics port is prometheus-client's own server), and validates no request:
#: pydantic (~9 MiB with its models) is the API's, and the credential specs' when RELAY_CREDENTIALS holds some
NOT_IN_WORKER = (
    "aiohttp.web",
    "aiohttp.web_app",
    "aiohttp.web_protocol",
    "relay.api",
    "pydantic",
    "pydantic_core",
)
#: and the API at rest has validated no request body and built no OpenAPI document: pydantic (~8 MiB with the
#: models) comes with the first request that validates a body (or GET /openapi.json); arq's queue is the worker's
NOT_IN_SERVE_AT_REST = (
    "pydantic",
    "pydantic_core",
    "relay.api.models",
    "relay.api.schemas",
    "relay.api.openapi",
    "relay.outbound.actions",
    "arq",
    "arq.connections",
    # a Cluster URL's client: only for a redis+cluster:// REDIS_URL
    "relay.store.cluster_client",
)

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$", re.MULTILINE)


def imported(stderr: str) -> set[str]:
    """The modules a process imported, from its ``-X importtime`` lines."""
    return set(_IMPORTED.findall(stderr))


def test_the_import_record_is_read() -> None:
    """The parser finds what a process imports (else an empty set would pass the tests below)."""
    out = subprocess.run(  # noqa: S603
        [str(Path(RELAY).parent / "python"), "-X", "importtime", "-c", "import rich.console"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert {"rich", "rich.console"} <= imported(out.stderr)


def _run_until(command: str, env: dict[str, str], log: Path, ready: str, then: Callable[[], None] | None = None) -> str:
    """Start ``relay <command>``, wait until ``ready`` is in its log (or the API answers /readyz), call ``then``
    (requests to the running process), stop it."""
    with log.open("w") as err:
        proc = subprocess.Popen([RELAY, command], env=env, stdout=subprocess.DEVNULL, stderr=err)  # noqa: S603
    try:
        deadline = time.monotonic() + 45
        while ready not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        if command == "serve":
            url = f"http://127.0.0.1:{env['RELAY_PORT']}/readyz"
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.1)
        if then is not None:
            then()
    finally:
        ensure_stopped(proc)
    return log.read_text()


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_running_sidecar_imports_only_what_it_uses(command: str, redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    redis.Redis.from_url(redis_server.url).flushall()  # at rest: no job another test left (its values are sealed)
    env = loopback_env(redis_server.url, PYTHONPROFILEIMPORTTIME="1", RELAY_PORT=str(free_port()))
    ready = "api listening" if command == "serve" else "worker started"
    modules = imported(_run_until(command, env, tmp_path / f"{command}.log", ready))
    assert "relay.cli.main" in modules and ("workers.main" in modules) == (command == "worker")
    forbidden = NEVER + (NOT_IN_WORKER if command == "worker" else NOT_IN_SERVE_AT_REST)
    assert sorted(m for m in forbidden if m in modules) == []


def _request(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, str, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310  loopback http
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310  loopback http
            return answer.status, answer.headers["Content-Type"], json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], json.loads(exc.read())


def test_the_api_loads_its_models_with_the_first_request_that_needs_them(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """A fresh ``relay serve`` (pydantic not loaded): its first request is an invalid registration, answered
    with the models' 422 field errors; then a valid one is stored, and GET /openapi.json is the whole document."""
    redis.Redis.from_url(redis_server.url).flushall()
    port = free_port()
    env = loopback_env(redis_server.url, PYTHONPROFILEIMPORTTIME="1", RELAY_PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    answers: dict[str, tuple[int, str, Any]] = {}

    def requests() -> None:
        answers["invalid"] = _request("POST", f"{base}/v1/jobs", {"monitorUrl": "ftp://x", "callbackUrl": 5})
        job = {"monitorUrl": "http://127.0.0.1:8099/monitor", "callbackUrl": "http://127.0.0.1:8099/hook"}
        answers["valid"] = _request("POST", f"{base}/v1/jobs", job)
        answers["document"] = _request("GET", f"{base}/openapi.json")

    modules = imported(_run_until("serve", env, tmp_path / "serve.log", "api listening", requests))
    status, kind, problem = answers["invalid"]
    assert status == 422 and kind.startswith("application/problem+json")
    assert {error["field"] for error in problem["errors"]} == {"monitorUrl", "callbackUrl"}
    status, _, view = answers["valid"]
    assert (
        status == 201
        and view["status"] == "notStarted"
        and redis.Redis.from_url(redis_server.url).exists(f"relay:job:{view['id']}")
    )
    status, _, document = answers["document"]
    assert status == 200 and document == json.loads(json.dumps(openapi_document(ROUTES)))
    assert {"pydantic", "relay.api.models", "relay.api.openapi"} <= modules
