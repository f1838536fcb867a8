"""A Redis primary, one replica and three Sentinels: real ``redis-server`` processes on loopback.

For tests/test_sentinel.py, tests/test_durability.py, tests/failover.py (``make failover``) and
tests/durability_bench.py. The Sentinels watch the service ``relay``; their failure detection is
tuned down (``down_after_ms``) so a failover takes seconds.
Optionally the replica replicates through a :class:`ReplicationLink`, a TCP forwarder that can hold
back what the primary sends, as a congested or partitioned network would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.store.embedded import EmbeddedRedis, find_redis_server, free_port

__all__ = ["FAST_SYNC", "SERVICE", "PrimaryReplica", "ReplicationLink", "SentinelSetup"]

SERVICE = "relay"
#: a replica syncs at once instead of waiting for more replicas to share a diskless transfer (Redis 7: 5 s)
FAST_SYNC = ("--repl-diskless-sync-delay", "0")


class PrimaryReplica:
    """A primary and one replica (no Sentinels): for RELAY_REDIS_MIN_REPLICAS."""

    def __init__(self) -> None:
        self.primary = EmbeddedRedis(args=FAST_SYNC)
        self.replica = EmbeddedRedis(args=(*FAST_SYNC, "--replicaof", "127.0.0.1", str(self.primary.port)))

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        deadline = time.monotonic() + 10
        # synced, and confirming writes (a new replica's first acknowledgement comes up to 1 s after its sync)
        with redis.Redis(port=self.primary.port) as client:
            while client.set("relay:probe", 1) and client.wait(1, 100) < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not sync")
            client.delete("relay:probe")

    @contextlib.contextmanager
    def replica_stalled(self) -> Iterator[None]:
        """The replica process stopped (SIGSTOP): it confirms nothing until it is continued."""
        if self.replica.process is None:
            raise RuntimeError("the replica is not running")
        os.kill(self.replica.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.replica.process.pid, signal.SIGCONT)

    def cleanup(self) -> None:
        self.replica.cleanup()
        self.primary.cleanup()


class ReplicationLink:
    """A TCP forwarder between the replica and its primary.

    ``stall()`` holds back what the primary sends (the replica hears nothing new, while the primary
    keeps acknowledging its clients); ``cut()`` drops what was held and closes, as the primary's host
    dying would: those bytes never reach the replica.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.stalled = False
        self.held = 0  # bytes from the primary held back since the stall
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def stall(self) -> None:
        self.stalled = True

    async def cut(self) -> int:
        """Close every connection, dropping what was held; the bytes dropped."""
        dropped = self.held
        await self.close()
        return dropped

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._pumps):
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        if self._pumps:
            await asyncio.gather(*self._pumps, return_exceptions=True)
        self._writers.clear()

    async def _accept(self, replica_r: asyncio.StreamReader, replica_w: asyncio.StreamWriter) -> None:
        self._writers.add(replica_w)
        try:
            primary_r, primary_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            replica_w.close()
            return
        self._writers.add(primary_w)
        for task in (
            asyncio.create_task(self._pump(replica_r, primary_w, holdable=False)),
            asyncio.create_task(self._pump(primary_r, replica_w, holdable=True)),
        ):
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, holdable: bool) -> None:
        try:
            while data := await reader.read(65536):
                if holdable and self.stalled:
                    self.held += len(data)
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


class SentinelProcess:
    def __init__(self, workdir: Path, index: int, primary_port: int, *, down_after_ms: int, failover_ms: int) -> None:
        self.port = free_port()
        self.conf = workdir / f"sentinel-{index}.conf"
        self.conf.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {workdir}\n"
            f"logfile {workdir / f'sentinel-{index}.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} {failover_ms}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603
            [find_redis_server(), str(self.conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def client(self) -> Redis:
        return Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


class SentinelSetup:
    """``await start()``; ``url()`` is the REDIS_URL for relay; ``kill_primary()``, ``wait_promoted()``,
    ``restart_old_primary()`` drive a failover; ``cleanup()`` stops everything."""

    def __init__(self, *, down_after_ms: int = 500, failover_ms: int = 2000, link: bool = False) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="relay-sentinel-"))
        self.primary = EmbeddedRedis(data_dir=str(self.workdir / "a"), args=FAST_SYNC)
        self.replica_port = free_port()
        self.replica: EmbeddedRedis | None = None
        self.link = ReplicationLink(self.primary.port) if link else None
        self.sentinels = [
            SentinelProcess(self.workdir, i, self.primary.port, down_after_ms=down_after_ms, failover_ms=failover_ms)
            for i in range(3)
        ]
        self.nodes = {self.primary.port: self.primary}

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}"

    async def start(self, timeout: float = 20.0) -> None:
        (self.workdir / "a").mkdir()
        (self.workdir / "b").mkdir()
        self.primary.start()
        upstream = self.primary.port
        if self.link is not None:
            upstream = await self.link.start()
        self.replica = EmbeddedRedis(
            data_dir=str(self.workdir / "b"),
            port=self.replica_port,
            args=(*FAST_SYNC, "--replicaof", "127.0.0.1", str(upstream)),
        )
        self.replica.start()
        self.nodes[self.replica_port] = self.replica
        for sentinel in self.sentinels:
            sentinel.start()
        deadline = time.monotonic() + timeout
        while not await self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Sentinels did not see the primary and its replica (logs in {self.workdir})")
            await asyncio.sleep(0.05)

    async def _ready(self) -> bool:
        # asyncio clients: the ReplicationLink forwards in this event loop
        try:
            # the replica confirms writes (its first acknowledgement comes up to 1 s after its sync)
            async with Redis(port=self.primary.port) as primary:
                if not await primary.set("relay:probe", 1) or await primary.wait(1, 50) < 1:
                    return False
                await primary.delete("relay:probe")
            for sentinel in self.sentinels:
                async with sentinel.client() as client:
                    state = await client.sentinel_master(SERVICE)
                    replicas = await client.sentinel_slaves(SERVICE)
                if state["num-other-sentinels"] < 2 or not replicas or replicas[0]["is_sdown"]:
                    return False
            return True
        except RedisError:
            return False

    async def master_port(self) -> int | None:
        """The primary's port as the first Sentinel that answers names it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(RedisError):
                async with sentinel.client() as client:
                    address = await client.sentinel_get_master_addr_by_name(SERVICE)
                if address:
                    return int(address[1])
        return None

    async def kill_primary(self) -> int:
        """SIGKILL the current primary; its port."""
        port = await self.master_port()
        if port is None:
            raise RuntimeError("no Sentinel names a primary")
        self.nodes[port].stop(kill=True)
        return port

    async def wait_promoted(self, old_port: int, timeout: float = 30.0) -> float:
        """Until the Sentinels name a primary other than ``old_port``; the seconds it took."""
        started = time.monotonic()
        while True:
            port = await self.master_port()
            if port is not None and port != old_port:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"no failover within {timeout:.0f} s (logs in {self.workdir})")
            await asyncio.sleep(0.05)

    async def restart_old_primary(self, old_port: int) -> None:
        """Start the killed node again as a replica of the new primary, as an operator (or a pod restart) would."""
        new_port = await self.master_port()
        if new_port is None or new_port == old_port:
            raise RuntimeError("the Sentinels name no new primary")
        node = self.nodes[old_port]
        node.args = [*FAST_SYNC, "--replicaof", "127.0.0.1", str(new_port)]
        node.start()

    async def cleanup(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        if self.link is not None:
            await self.link.close()
        for node in self.nodes.values():
            node.stop(kill=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
