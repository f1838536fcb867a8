"""``relay demo`` as a new user runs it: a real process, exit code 0, the verified event printed."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import RELAY, relay_env


@pytest.mark.parametrize(
    ("args", "expected"),
    [([], "job.completed"), (["--action", "upload", "--fail"], "job.failed"), (["--long"], "job.completed")],
)
def test_demo_shows_the_terminal_event(args: list[str], expected: str) -> None:
    env = relay_env()
    proc = subprocess.run(  # noqa: S603
        [RELAY, "demo", "--duration", "1.5", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"verified {expected}" in proc.stdout
    assert '"driveItem"' in proc.stdout or expected == "job.failed"
    if "--long" in args:
        assert "job.authorizationRequired" in proc.stdout and "after the app sent the PATCH" in proc.stdout
