"""``relay demo`` as a new user runs it: a real process, exit code 0, the verified event printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RELAY = str(Path(sys.executable).parent / "relay")


@pytest.mark.parametrize(
    ("args", "expected"), [([], "job.completed"), (["--action", "upload", "--fail"], "job.failed")]
)
def test_demo_shows_the_terminal_event(args: list[str], expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_") and k != "REDIS_URL"}
    proc = subprocess.run(  # noqa: S603
        [RELAY, "demo", "--duration", "1.5", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"verified {expected}" in proc.stdout
    assert '"driveItem"' in proc.stdout or expected == "job.failed"
