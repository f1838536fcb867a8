"""Starting the commands as a user does: what a user can get wrong stops the start with one line (cause and fix,
exit code 2, no traceback), and a worker says in relay's words what it ran, on which Redis, and what it did."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from relay.store.embedded import EmbeddedRedis
from tests.helpers import (
    ENCRYPTION_KEY,
    RELAY,
    SECRET,
    Api,
    Receiver,
    ensure_stopped,
    free_port,
    loopback_env,
    relay_env,
)

SECRET_ENV = {
    "RELAY_SIGNING_SECRETS": SECRET,
    "RELAY_ENCRYPTION_KEY": ENCRYPTION_KEY,
    "RELAY_WORKER_METRICS_PORT": "0",
}
COMPLETED = {"status": "completed", "percentageComplete": 100.0, "resourceId": "01ABC"}


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [RELAY, *args], env=relay_env(**{**SECRET_ENV, **env}), capture_output=True, text=True, timeout=45
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The command stopped with code 2 and one line on stderr (beside log lines), no traceback: that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Unclosed" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("relay: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def locked_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of its own that requires the password ``pw``."""
    server = EmbeddedRedis()
    server.start()
    client = redis.Redis(port=server.port)
    client.config_set("requirepass", "pw")
    client.close()  # type: ignore[no-untyped-call]  # untyped in redis-py 5.2
    yield server
    server.cleanup()


def test_dev_on_a_port_in_use_says_so_in_one_line(busy_port: int) -> None:
    line = one_line(run(["dev"], RELAY_PORT=str(busy_port)))
    assert f"127.0.0.1:{busy_port}" in line and "in use" in line and "RELAY_PORT" in line


def test_simulate_on_a_port_in_use_says_so_in_one_line(busy_port: int) -> None:
    line = one_line(run(["simulate", "--port", str(busy_port)]))
    assert f"127.0.0.1:{busy_port}" in line and "in use" in line and "--port" in line


def test_worker_whose_metrics_port_is_in_use_says_so_in_one_line(busy_port: int, redis_server: EmbeddedRedis) -> None:
    line = one_line(run(["worker"], REDIS_URL=redis_server.url, RELAY_WORKER_METRICS_PORT=str(busy_port)))
    assert "in use" in line and "RELAY_WORKER_METRICS_PORT" in line


def test_serve_without_redis_says_where_it_looked() -> None:
    port = free_port()
    line = one_line(
        run(["serve"], REDIS_URL=f"redis://127.0.0.1:{port}/0", RELAY_REDIS_STARTUP_WAIT="0", RELAY_PORT="0")
    )
    assert f"Redis at redis://127.0.0.1:{port}/0" in line and "refused" in line and "REDIS_URL" in line


def test_worker_without_the_redis_password_is_told_to_put_it_in_the_url(locked_redis: EmbeddedRedis) -> None:
    line = one_line(run(["worker"], REDIS_URL=locked_redis.url))
    assert "requires a password" in line and "REDIS_URL" in line


def test_dev_with_a_wrong_redis_password_is_refused_without_showing_it(locked_redis: EmbeddedRedis) -> None:
    proc = run(["dev"], REDIS_URL=f"redis://:not-it@127.0.0.1:{locked_redis.port}/0", RELAY_PORT="0")
    line = one_line(proc)
    assert "refused relay's credentials" in line and "REDIS_URL" in line
    assert "not-it" not in proc.stderr + proc.stdout


async def test_a_worker_says_what_it_ran_on_which_redis_and_what_it_did(
    locked_redis: EmbeddedRedis, simulator: Any, receiver: Receiver
) -> None:
    from relay.config.settings import Settings
    from tests.helpers import running_api

    url = f"redis://:pw@127.0.0.1:{locked_redis.port}/0"
    settings = Settings(
        redis_url=url,
        signing_secrets=(SECRET,),
        encryption_keys=(ENCRYPTION_KEY,),
        monitor_allowed_hosts=("127.0.0.1",),
        internal_hosts=("127.0.0.1",),
    )
    proc = _worker(url)
    try:
        async with running_api(settings) as api:
            jobs = [await _job(api, simulator, receiver) for _ in range(2)]
            await receiver.wait_for(lambda: all(receiver.terminal(j["id"]) for j in jobs), timeout=30)
        await asyncio.sleep(0.3)  # the acks of the last deliveries land
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.get_running_loop().run_in_executor(None, proc.communicate, None, 30)
    finally:
        ensure_stopped(proc)
    assert proc.returncode == 0, err
    lines = {line["event"]: line for line in map(json.loads, err.splitlines())}
    assert lines["worker started"]["redis"] == f"redis://127.0.0.1:{locked_redis.port}/0"  # no password
    assert lines["worker stopping"]["signal"] == "SIGINT"
    assert lines["worker stopped"]["delivered"] == 2 and lines["worker stopped"]["polls"] >= 2
    # none of arq's lines about its own single function and its own (zero) jobs
    assert not [text for text in err.splitlines() if "Starting worker for" in text or "shutdown on" in text]
    assert ":pw@" not in err


def _worker(redis_url: str) -> subprocess.Popen[str]:
    env = loopback_env(redis_url, RELAY_POLL_INITIAL_INTERVAL="0.05", RELAY_POLL_MAX_INTERVAL="0.3")
    return subprocess.Popen([RELAY, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603


async def _job(api: Api, simulator: Any, receiver: Receiver) -> dict[str, Any]:
    op = simulator.create(script=[{"status": 202, "body": COMPLETED}])
    return await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
