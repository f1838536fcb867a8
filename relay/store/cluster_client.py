"""relay's client for a Redis Cluster (``REDIS_URL=redis+cluster://...``): redis-py's asyncio ``RedisCluster`` with
one connection attempt per address and relay's retry around every call.

Why this shape (docs/cluster-design.md, "The client"):

- redis-py retries a connection with the connection's own retry policy before it re-reads the slot map. With
  relay's plain policy (35 attempts, backoff to 2 s) a cluster client knocked at a SIGKILLed primary's address for
  the whole budget: one call blocked 65 s. Here each address gets one attempt (``Retry(NoBackoff(), 0)``); a
  failure makes redis-py re-read the slot map, and :meth:`RelayCluster.execute_command` (and a pipeline's
  ``execute``) retries the call, 0.05 s doubling to 2 s, for :data:`RETRY_FOR` seconds: long enough for a replica
  to be promoted (``cluster-node-timeout`` plus the election).
- What is retried: no answer (``ConnectionError``, ``TimeoutError``), a cluster without a slot's owner
  (``CLUSTERDOWN``, a slot map not covering every slot), redirections redis-py gave up on (``TTL exhausted``,
  ``TRYAGAIN``, ``MOVED``/``ASK`` left in a pipeline), and a script refused because a key it touches has already
  moved (``non local key``: the script runs again where its keys are). Past the budget the error reaches the
  caller: the API answers 503 (relay/store/refusals.py), a worker backs off.
- The startup nodes of the URL are put back each time the slot map is read: redis-py replaces them with the nodes it
  discovered, and forgets a node that failed; a cluster whose every node came back at a new address (pods
  rescheduled) is found again through the URL's names.
- A connection another call is waiting on is not closed under it when redis-py re-reads the slot map
  (:class:`_KeptConnection`): redis-py closed them all, and a healthy primary's answers were lost and the commands
  run again by the retry.
- ``RELAY_REDIS_MIN_REPLICAS`` > 0: a script is sent as ``EVALSHA`` followed by ``WAIT`` on the same connection to
  the node of its first key (one cluster pipeline, one send), as :class:`relay.store.durable.DurableRedis` does on
  one Redis; :class:`NotReplicated` when fewer replicas confirm in time.
- Scripts: ``SCRIPT LOAD`` goes to every primary; a replica promoted on Redis 7 has none loaded, and
  :class:`relay.store.scripts.LuaScript` loads the script again on ``NOSCRIPT``.
- Pub/sub: redis-py 5.2's asyncio ``RedisCluster`` has none. A ``PUBLISH`` (from a script too) reaches the
  subscribers of every node of the cluster, so :meth:`RelayCluster.subscriber` gives a plain client to any one
  node (workers/waker.py moves to another when that one fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, PipelineCommand, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    ConnectionError,
    MovedError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from relay.config.redis_url import ClusterURL
from relay.store.durable import NotReplicated

__all__ = ["RETRY_FOR", "RelayCluster", "cluster_client", "is_transient"]

T = TypeVar("T")

#: seconds a call is retried for before its error reaches the caller (as the plain client's ~60 s)
RETRY_FOR = 60.0
_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0
#: errors that go away by themselves on a cluster: a node restarting or failed over, a slot moving
_TRANSIENT: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    OSError,
    ClusterError,  # TTL exhausted; ClusterDownError (CLUSTERDOWN, MASTERDOWN) derives from it
    TryAgainError,
    AskError,  # MovedError derives from it
    SlotNotCoveredError,
)
#: what a script touching a key of a slot its node no longer serves is refused with
_NON_LOCAL = "non local key"
#: RedisClusterException's messages for a cluster that cannot be read yet (its other messages are a caller's bug)
_UNREADY = ("Redis Cluster cannot be connected", "All slots are not covered", "startup_nodes could not agree")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is one a cluster client retries (see the module's docstring)."""
    if isinstance(exc, _TRANSIENT) or _closed_under_it(exc):
        return True
    if isinstance(exc, ResponseError):
        return _NON_LOCAL in str(exc)
    if isinstance(exc, RedisClusterException):
        return str(exc).startswith(_UNREADY) and not isinstance(exc.__cause__, AuthenticationError | ResponseError)
    return False


def _closed_under_it(exc: BaseException) -> bool:
    """A connection closed by another call while this one was using it: redis-py's cluster client disconnects every
    connection (those in use too) to read the slot map again after an error, and a call writing on one of them
    meets ``'NoneType' object has no attribute 'writelines'`` (35-49 of ~13,000 calls of 60 callers through a
    failover, before :class:`_KeptConnection` kept in-flight connections open; none since). Nothing was written;
    the call is made again."""
    if not isinstance(exc, AttributeError) or "'NoneType' object" not in str(exc):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}redis{os.sep}" in tb.tb_frame.f_code.co_filename


def _as_redis_error(exc: Exception) -> Exception:
    """What reaches the caller: a cluster the client could not read at all is a ``ConnectionError`` (the API's 503,
    the startup check's "cannot reach"), a wrong password its ``AuthenticationError``; the rest as they are."""
    if isinstance(exc, SlotNotCoveredError):  # a slot without an owner in the map redis-py holds: as CLUSTERDOWN
        return ClusterDownError("a slot has no owner in the cluster's slot map")  # type: ignore[no-untyped-call]
    if isinstance(exc, RedisClusterException):
        cause = exc.__cause__
        if isinstance(cause, AuthenticationError):
            return cause
        if str(exc).startswith(_UNREADY[0]):
            return ConnectionError(f"no node of the cluster answered ({type(cause).__name__ if cause else 'none'})")
        if str(exc).startswith(_UNREADY[1:]):
            return ConnectionError("the cluster's nodes do not serve every slot yet")
    if _closed_under_it(exc):
        return ConnectionError("the connection was closed under the call (the cluster client re-reading its map)")
    return exc


class RelayCluster(RedisCluster):
    """A ``RedisCluster`` whose every call is retried through failovers and slot moves (module docstring)."""

    #: with RELAY_REDIS_MIN_REPLICAS > 0 (set by :func:`cluster_client`): scripts wait for that many replicas
    min_replicas: int = 0
    wait_timeout_ms: int = 1000
    retry_for: float = RETRY_FOR
    #: the URL's nodes, put back among the startup nodes before each retry
    configured_nodes: tuple[tuple[str, int], ...] = ()
    #: connection options for a plain client to one node (:meth:`subscriber`): the URL's, decoding, timeouts
    node_options: dict[str, Any] = {}  # noqa: RUF012  # replaced per client by cluster_client, never mutated

    async def subscriber(self, avoid: str | None = None) -> tuple[Redis, str]:
        """A plain client to one node of the cluster, chosen at random among those the slot map lists (the URL's
        when none is known), other than ``avoid`` (a node's ``host:port`` that just failed) when there is another;
        and that node's ``host:port``. For pub/sub: a subscription is idle by nature, so no read timeout."""
        with contextlib.suppress(Exception):  # a cluster not reachable now: the URL's nodes, tried in turn
            await self.initialize()
        known = [(node.host, int(node.port)) for node in self.get_nodes()] or list(self.configured_nodes)
        choices = [(host, port) for host, port in known if f"{host}:{port}" != avoid] or known
        host, port = random.choice(choices)
        options = {**self.node_options, "socket_timeout": None}
        return Redis(host=host, port=port, **options), f"{host}:{port}"

    async def initialize(self) -> RelayCluster:
        """As redis-py's, except where it asks ``COMMAND`` (the key positions of commands, once): redis-py asks the
        first primary of the slot map, and while that one is dead (SIGKILLed, not yet failed over) every
        re-initialization failed with its ConnectionError, for keys of the live nodes too. Here the first primary
        that answers is asked, and becomes the default node (keyless commands)."""
        if self._initialize:
            if not self._lock:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._initialize:
                    try:
                        self._restore_startup_nodes()
                        await self.nodes_manager.initialize()
                        await self._command_table()
                        self._initialize = False
                    except BaseException:
                        await self.nodes_manager.aclose()
                        await self.nodes_manager.aclose("startup_nodes")
                        raise
        return self

    async def _command_table(self) -> None:
        default = self.nodes_manager.default_node
        candidates = [default, *(node for node in self.get_primaries() if node is not default)]
        failure: Exception | None = None
        for node in candidates:
            try:
                if self.commands_parser.commands:  # read once already: only whether the node answers
                    await node.execute_command("PING")
                    self.commands_parser.node = node
                else:
                    await self.commands_parser.initialize(node)
            except (ConnectionError, TimeoutError, OSError) as exc:
                failure = exc
                continue
            self.nodes_manager.default_node = node
            return
        assert failure is not None
        raise failure

    async def retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``, again after each transient error, 0.05 s doubling to 2 s, for :attr:`retry_for` seconds."""
        deadline = time.monotonic() + self.retry_for
        delay = _FIRST_DELAY
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise _as_redis_error(exc) from exc
                if isinstance(exc, MovedError):  # left in a pipeline: the slot map is read again before the next
                    self.nodes_manager._moved_exception = exc
            await asyncio.sleep(delay)
            delay = min(_MAX_DELAY, delay * 2)

    def _restore_startup_nodes(self) -> None:
        """The URL's nodes back among the startup nodes (redis-py replaces them with those it discovered, and
        forgets one that failed): a cluster whose every node moved (pods rescheduled) is found again by name."""
        known = self.nodes_manager.startup_nodes
        for host, port in self.configured_nodes:
            node = ClusterNode(host, port, **self.connection_kwargs)
            known.setdefault(node.name, node)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await self.retrying(lambda: RedisCluster.execute_command(self, *args, **dict(kwargs)))

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        super().pipeline(transaction, shard_hint)  # its refusals (a transaction, a shard hint)
        return _RetryingPipeline(self)  # type: ignore[abstract]  # redis-py 5.2's abstract base, not ours

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        if self.min_replicas <= 0:
            return await self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)
        # a pipeline of one: its script followed by WAIT on the same connection to the script's node
        pipe = self.pipeline()
        pipe.execute_command("EVALSHA", sha, numkeys, *keys_and_args)
        # errors come back as values: raise_on_error would annotate them with every argument (monitor URLs among
        # them), and those messages reach the logs
        (result,) = await pipe.execute(raise_on_error=False)
        if isinstance(result, Exception):
            raise result
        return result

    def not_replicated(self, confirmed: Any) -> NotReplicated | None:
        """What a node's scripts answer when its ``WAIT`` answered ``confirmed``: None when enough replicas
        confirmed them, else :class:`NotReplicated` (the scripts ran on the primary; their callers treat them as
        not done)."""
        if isinstance(confirmed, Exception):  # the WAIT's answer was lost: whether any replica has them is unknown
            return NotReplicated(
                f"WAIT: no answer ({type(confirmed).__name__}): the write is not known to be on "
                f"{self.min_replicas} replicas (RELAY_REDIS_MIN_REPLICAS)"
            )
        if int(confirmed) < self.min_replicas:
            return NotReplicated(
                f"WAIT: {confirmed} of {self.min_replicas} replicas confirmed the write within "
                f"{self.wait_timeout_ms} ms (RELAY_REDIS_MIN_REPLICAS)"
            )
        return None


class _KeptConnection(Connection):
    """A node's connection that another call does not close under a command in flight.

    redis-py's cluster client re-reads the slot map after an error by disconnecting every connection of every
    node, those other calls are using included, and it does so again when it replaces its node objects. A call
    whose command a healthy primary had run then lost the answer, and relay's retry ran it again: through a
    failover of one primary, 84 of ~13,000 calls of 60 callers were counted twice, all on the primaries that had
    not failed. Here a disconnect from another task while answers are awaited is put off until they are read
    (the connection is closed then); the connection's own failures close it at once, as before.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._packed = 0  # commands in the latest pack (one, or a pipeline's)
        self._awaited = 0  # answers sent for and not read yet
        self._user: asyncio.Task[Any] | None = None
        self._close_after = False

    def pack_command(self, *args: Any) -> list[bytes]:
        self._packed = 1
        return super().pack_command(*args)

    def pack_commands(self, commands: Any) -> list[bytes]:
        commands = list(commands)
        packed = super().pack_commands(commands)
        self._packed = len(commands)
        return packed

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        # counted before the write: the write runs in a task of its own (socket_timeout), and a disconnect from
        # elsewhere while it finishes would otherwise lose an answer to a command already sent
        count, self._user = self._packed, asyncio.current_task()
        self._awaited += count
        try:
            await super().send_packed_command(command, check_health)
        except BaseException:
            self._awaited = max(0, self._awaited - count)
            if self._close_after and not self._awaited:
                await self.disconnect()
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        finally:
            self._awaited = max(0, self._awaited - 1)
            if self._close_after and not self._awaited:
                await self.disconnect()

    async def disconnect(self, nowait: bool = False) -> None:
        if self._awaited and asyncio.current_task() is not self._user:
            self._close_after = True  # closed by the call using it, once its answers are read
            return
        self._awaited, self._close_after = 0, False
        await super().disconnect(nowait)


class _KeptSSLConnection(_KeptConnection, SSLConnection):
    pass


class _StartupNodes(dict[str, ClusterNode]):
    """The startup nodes, read over a snapshot: redis-py forgets a failed node (``pop``) in one call while another
    may be reading the slot map from them (an ``await`` per node), which changed the dict under that loop."""

    def values(self) -> list[ClusterNode]:  # type: ignore[override]
        return list(super().values())


#: a command's place in a pipeline not answered yet (never sent, or to be sent again)
_UNANSWERED: Any = object()
_SCRIPTS = frozenset({"EVALSHA", "EVAL"})


class _RetryingPipeline(ClusterPipeline):
    """A cluster pipeline whose commands that failed transiently (or were never sent: a node that could not be
    reached) are sent again, and only those: the answers of the others are kept, in their order. redis-py's own
    pipeline sent every command again after an error on one node (and, its nodes' sends being gathered, could send
    again those of a healthy node still in flight): a healthy node's scripts ran twice (a claim's members then
    waited out a lease, an admission counted twice).

    With ``RELAY_REDIS_MIN_REPLICAS`` > 0 each node that runs a script gets ``WAIT`` after its commands, on the same
    connection (one send per node, as :meth:`RelayCluster.evalsha` for one script); the scripts of a node whose
    replicas did not confirm in time (or whose ``WAIT`` got no answer) answer :class:`NotReplicated`, as a lone
    script does, and are not sent again (they ran). A command whose outcome
    is unknown (the connection dropped after it was sent) is sent again, as a lone call is: relay's scripts sent
    this way are guarded so that running one again does no harm (register.lua's and admit.lua's admitted part,
    claim tokens, sequences).
    """

    _client: RelayCluster

    async def initialize(self) -> ClusterPipeline:
        """``async with client.pipeline()`` reads the slot map first when the client must: retried as a call is."""
        if self._client._initialize:
            await self._client.retrying(self._client.initialize)
        self._command_stack = []
        return self

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        """Each command's answer, in order; past the client's retry budget a command still failing transiently
        answers its error. ``raise_on_error``: the first error is raised instead (unannotated: a message naming
        every argument would carry monitor URLs to the logs). Redirections are followed by sending the command
        again once the slot map is read again (``allow_redirections`` is accepted for redis-py's signature)."""
        queued = [(cmd.args, dict(cmd.kwargs)) for cmd in self._command_stack]
        self._command_stack = []
        answers: list[Any] = [_UNANSWERED] * len(queued)
        client = self._client
        deadline = time.monotonic() + client.retry_for
        delay = _FIRST_DELAY
        while True:
            todo = [i for i, answer in enumerate(answers) if answer is _UNANSWERED or _again(answer)]
            if not todo:
                break
            try:
                await self._send(queued, todo, answers)
            except Exception as exc:  # the slot map could not be read, or a command maps to no node
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise _as_redis_error(exc) from exc
                for i in todo:
                    if answers[i] is _UNANSWERED:
                        answers[i] = exc
            failed = [answers[i] for i in todo if _again(answers[i])]
            if not failed:
                break
            if time.monotonic() + delay > deadline:
                answers = [_as_redis_error(answer) if _again(answer) else answer for answer in answers]
                break
            await self._before_again(failed)
            await asyncio.sleep(delay)
            delay = min(_MAX_DELAY, delay * 2)
        if raise_on_error:
            for answer in answers:
                if isinstance(answer, Exception):
                    raise answer
        return answers

    async def _before_again(self, failed: list[Exception]) -> None:
        """After a node could not be reached the slot map is read again before the next send (as redis-py's
        pipeline does); after a MOVED, the moved slot's owner is updated."""
        if any(isinstance(exc, ClusterPipeline.ERRORS_ALLOW_RETRY) for exc in failed):
            await self._client.aclose()
        moved = next((exc for exc in failed if isinstance(exc, MovedError)), None)
        if moved is not None:
            self._client.nodes_manager._moved_exception = moved

    async def _send(self, queued: list[tuple[Any, dict[str, Any]]], todo: list[int], answers: list[Any]) -> None:
        """Send the commands ``todo`` (their places in ``queued``), one pipeline per node, all nodes at once; each
        one's answer (or error) in ``answers``."""
        client = self._client
        if client._initialize:
            await client.initialize()
        nodes: dict[str, tuple[ClusterNode, list[PipelineCommand]]] = {}
        for i in todo:
            args, kwargs = queued[i]
            kwargs = dict(kwargs)
            node = await self._node_of(args, kwargs.pop("target_nodes", None))
            nodes.setdefault(node.name, (node, []))[1].append(PipelineCommand(i, *args, **kwargs))
        waits: dict[str, PipelineCommand] = {}
        if client.min_replicas > 0:
            for name, (_, commands) in nodes.items():
                if any(str(cmd.args[0]).upper() in _SCRIPTS for cmd in commands):
                    waits[name] = PipelineCommand(-1, "WAIT", client.min_replicas, client.wait_timeout_ms)
                    commands.append(waits[name])
        sends = await asyncio.gather(
            *(node.execute_pipeline(commands) for node, commands in nodes.values()), return_exceptions=True
        )
        for (name, (_, commands)), sent in zip(nodes.items(), sends, strict=True):
            if isinstance(sent, BaseException) and not isinstance(sent, Exception):
                raise sent  # cancelled
            wait = waits.get(name)
            refused = None if wait is None or isinstance(sent, Exception) else client.not_replicated(wait.result)
            for cmd in commands:
                if cmd is wait:
                    continue
                answer = sent if isinstance(sent, Exception) else cmd.result
                if refused is not None and not isinstance(answer, Exception):
                    # ran on the primary, not confirmed by its replicas: not done (not sent again either)
                    answer = refused if str(cmd.args[0]).upper() in _SCRIPTS else answer
                answers[cmd.position] = answer

    async def _node_of(self, args: Any, passed: Any) -> ClusterNode:
        """The node a command goes to: the one it names (``target_nodes``), else its key's (redis-py's rules)."""
        client = self._client
        if passed and not client._is_node_flag(passed):
            targets = client._parse_target_nodes(passed)
        else:
            targets = await client._determine_nodes(*args, node_flag=passed)
        if len(targets) != 1:
            raise RedisClusterException(f"a pipeline's command goes to one node, not {len(targets)}: {args[0]}")
        node: ClusterNode = targets[0]
        return node


def _again(answer: Any) -> bool:
    """Whether a command answered ``answer`` is sent again: a transient error (a node unreachable, a slot moving)."""
    return isinstance(answer, Exception) and is_transient(answer)


def cluster_client(
    target: ClusterURL,
    connection_kwargs: dict[str, Any],
    *,
    min_replicas: int = 0,
    wait_timeout: float = 1.0,
    retry_for: float | None = None,
) -> RelayCluster:
    """relay's cluster client for ``target``, its connections made with ``connection_kwargs`` (the plain client's:
    decoding, timeouts), one attempt per address."""
    kwargs: dict[str, Any] = {k: v for k, v in connection_kwargs.items() if k not in ("retry", "retry_on_error")}
    kwargs.setdefault("socket_timeout", 10)  # a primary gone silent (no RST) fails the call, which is retried
    kwargs.update(target.node_kwargs())
    client = RelayCluster(  # type: ignore[abstract]  # redis-py 5.2's abstract base, not ours
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        retry=Retry(NoBackoff(), 0),
        **kwargs,
    )
    client.configured_nodes = target.nodes
    # every node the client makes from here on (its kwargs are shared with the nodes manager) keeps its connections
    # open under a command in flight; the startup nodes were made already: made again
    client.connection_kwargs["connection_class"] = _KeptSSLConnection if target.tls else _KeptConnection
    client.nodes_manager.startup_nodes = _StartupNodes()
    client._restore_startup_nodes()
    client.node_options = {**kwargs, "retry": Retry(NoBackoff(), 0)}
    client.retry_for = RETRY_FOR if retry_for is None else retry_for
    client.min_replicas = min_replicas
    client.wait_timeout_ms = max(1, round(wait_timeout * 1000))
    return client
