"""The console script as a user runs it: real processes, real ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

RELAY = str(Path(sys.executable).parent / "relay")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_") and k != "REDIS_URL"}
    env.update(extra)
    return env


def test_bad_configuration_stops_with_one_line() -> None:
    proc = subprocess.run(  # noqa: S603
        [RELAY, "serve"], env=clean_env(RELAY_PORT="eighty"), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "RELAY_PORT" in proc.stderr


def test_worker_refuses_to_start_without_signing_secrets() -> None:
    proc = subprocess.run([RELAY, "worker"], env=clean_env(), capture_output=True, text=True, timeout=30)  # noqa: S603
    assert proc.returncode == 2 and "RELAY_SIGNING_SECRETS" in proc.stderr


def test_serve_refuses_open_bind_without_tokens() -> None:
    proc = subprocess.run(  # noqa: S603
        [RELAY, "serve"], env=clean_env(RELAY_HOST="0.0.0.0"), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and "RELAY_API_TOKENS" in proc.stderr


def test_dev_starts_embedded_redis_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603
        [RELAY, "dev"],
        env=clean_env(RELAY_PORT=str(port), RELAY_LOG_FORMAT="json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "relay dev did not become ready"
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "whsec_" in out  # the generated secret is printed for the user
    assert "whsec_" not in err  # ... and never logged
