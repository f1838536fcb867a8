"""The sidecar imports only what it uses: a running ``relay serve`` and ``relay worker`` (started, ready, at
rest) never load the CLI's rich, azure-identity (no ``RELAY_CREDENTIALS``), the simulator, cryptography (until a
value is sealed or opened), or, in the worker, aiohttp's server and pydantic.
Each such package is megabytes resident in every replica (docs/performance.md, "Memory").

Python's own record of a process's imports (``PYTHONPROFILEIMPORTTIME``: one line per module imported, on
stderr) is read from the real processes, so whatever their start-up runs counts, not only their entry modules.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

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
    "relay.config.credentials",
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


def _run_until(command: str, env: dict[str, str], log: Path, ready: str) -> str:
    """Start ``relay <command>``, wait until ``ready`` is in its log (or the API answers /readyz), stop it."""
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
    finally:
        ensure_stopped(proc)
    return log.read_text()


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_running_sidecar_imports_only_what_it_uses(command: str, redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    env = loopback_env(redis_server.url, PYTHONPROFILEIMPORTTIME="1", RELAY_PORT=str(free_port()))
    ready = "api listening" if command == "serve" else "worker started"
    modules = imported(_run_until(command, env, tmp_path / f"{command}.log", ready))
    assert "relay.cli.main" in modules and ("workers.main" in modules) == (command == "worker")
    forbidden = NEVER + (NOT_IN_WORKER if command == "worker" else ())
    assert sorted(m for m in forbidden if m in modules) == []
