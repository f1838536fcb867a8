"""The console script as a user runs it: real processes, real ports."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
from pathlib import Path

from tests.helpers import RELAY, SECRET, ensure_stopped, free_port, wait_http
from tests.helpers import relay_env as clean_env


def test_bad_configuration_stops_with_one_line() -> None:
    proc = subprocess.run(  # noqa: S603
        [RELAY, "serve"], env=clean_env(RELAY_PORT="eighty"), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "RELAY_PORT" in proc.stderr


def test_a_redis_password_with_an_unescaped_slash_is_one_line_that_keeps_the_password() -> None:
    """``/`` ends a URL's authority: ``redis://:s3cr/etpw@host`` read ``s3cr`` as a port and printed it in a
    traceback (serve; dev likewise), or ``etpw@host`` as a database (worker). Now: exit 2, one line, no password."""
    env = clean_env(REDIS_URL="redis://:s3cr/etpw0rd@127.0.0.1:6379/0", RELAY_SIGNING_SECRETS=SECRET)
    procs = [
        subprocess.Popen(  # noqa: S603
            [RELAY, command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for command in ("serve", "worker")
    ]
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            ensure_stopped(proc)
        assert proc.returncode == 2, err
        assert err.strip().count("\n") == 0 and "percent-encode it as %2F" in err, err
        assert "s3cr" not in err and "etpw0rd" not in err, err


def test_worker_refuses_to_start_without_signing_secrets() -> None:
    proc = subprocess.run([RELAY, "worker"], env=clean_env(), capture_output=True, text=True, timeout=30)  # noqa: S603
    assert proc.returncode == 2 and "RELAY_SIGNING_SECRETS" in proc.stderr


def test_serve_refuses_open_bind_without_tokens() -> None:
    proc = subprocess.run(  # noqa: S603
        [RELAY, "serve"], env=clean_env(RELAY_HOST="0.0.0.0"), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and "RELAY_API_TOKENS" in proc.stderr


def test_worker_refuses_to_start_without_a_sealing_key() -> None:
    env = clean_env(RELAY_SIGNING_SECRETS=SECRET)
    proc = subprocess.run([RELAY, "worker"], env=env, capture_output=True, text=True, timeout=30)  # noqa: S603
    assert proc.returncode == 2 and "RELAY_ENCRYPTION_KEY" in proc.stderr and proc.stderr.count("\n") == 1


def test_dev_starts_embedded_redis_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """relay dev makes a sealing key and signing secret once, keeps them in the user's state directory (0600, the
    path logged), prints the secret for the user's receiver, and logs neither."""
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603
        [RELAY, "dev"],
        env=clean_env(RELAY_PORT=str(port), RELAY_LOG_FORMAT="json", XDG_STATE_HOME=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        ensure_stopped(proc)
    assert proc.returncode == 0, err
    state = tmp_path / "relay" / "dev.json"
    kept = json.loads(state.read_text())
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert kept["signingSecret"] in out  # the secret is printed for the user
    assert "whsec_" not in err and kept["encryptionKey"] not in out + err  # ... and never logged
    assert any(json.loads(line).get("path") == str(state) for line in err.splitlines() if line.startswith("{"))
    events = [json.loads(line)["event"] for line in err.splitlines()]
    assert events.index("relay dev stopping") < events.index("worker stopped") < events.index("relay dev stopped")
    assert "shutdown on SIGUSR1" not in err  # arq's words for its owner closing it, not the signal the user sent
