"""What stops a command from starting, said in one line: the cause and the fix, exit code 2, no traceback.

``relay serve``, ``worker``, ``dev``, ``simulate`` and ``listen`` bind their ports here before anything else
(:func:`listen`), and the commands that use Redis ask it once before they start (:func:`check_redis`), so a port
in use, an unreachable Redis or one refusing relay's credentials is a :class:`StartupError` naming the setting
to change, not a traceback from deep inside aiohttp or arq.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.sentinel

from relay.config.redis_url import redis_where
from relay.store.connections import sync_client

__all__ = ["StartupError", "bind_refusal", "check_redis", "listen"]

#: how long one PING at start may take before it counts as unanswered
_PING_TIMEOUT = 2.0
_RETRY_PAUSE = 0.5


class StartupError(Exception):
    """The command cannot start; the message is one line for the user: what is wrong and what to do."""


def bind_refusal(exc: OSError, host: str, port: int, *, host_option: str, port_option: str) -> str:
    """Why ``host:port`` cannot be listened on, and which option changes it."""
    where = f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return (
            f"cannot listen on {where}: {host!r} is not an address of this machine ({exc.strerror}); set {host_option}"
        )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is in use (another relay, or another program); "
            f"stop it or choose a free port with {port_option}"
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: permission denied (a port below 1024 needs privileges); "
            f"choose another port with {port_option}"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot listen on {where}: this machine has no such address; "
            f"set {host_option} to one of its own (127.0.0.1: this machine only)"
        )
    return f"cannot listen on {where}: {exc.strerror or exc}; check {host_option} and {port_option}"


def listen(host: str, port: int, *, host_option: str, port_option: str) -> list[socket.socket]:
    """Sockets bound to every address ``host`` names (as asyncio's ``create_server`` would bind them), or a
    :class:`StartupError` saying why not; pass them to aiohttp (``sock=``/``SockSite``) or asyncio (``sock=``)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(bind_refusal(exc, host, port, host_option=host_option, port_option=port_option)) from None
    bound: list[socket.socket] = []
    seen: set[tuple[object, ...]] = set()
    for family, kind, proto, _, address in infos:
        if (family, address) in seen:
            continue
        seen.add((family, address))
        sock = socket.socket(family, kind, proto)
        bound.append(sock)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
        except OSError as exc:
            for other in bound:
                other.close()
            message = bind_refusal(exc, host, port, host_option=host_option, port_option=port_option)
            raise StartupError(message) from None
    return bound


def _unreachable(exc: redis.RedisError) -> str | None:
    """Why Redis could not be reached (worth waiting for), or None for an answer that waiting will not change."""
    if isinstance(exc, redis.AuthenticationError):
        return None
    if isinstance(exc, redis.TimeoutError):
        return f"no answer within {_PING_TIMEOUT:g} s (a firewall, or TLS on one side only: rediss:// vs redis://?)"
    if isinstance(exc, redis.ConnectionError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, socket.gaierror):
            return f"the host name does not resolve ({cause.strerror}: is it spelled right in REDIS_URL?)"
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return "connection refused (nothing listens there)"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        if isinstance(exc, redis.sentinel.MasterNotFoundError):
            return "no Sentinel named a primary for the service (are the Sentinels up, is the service name right?)"
        return str(exc)
    return None


def _refusal(exc: redis.RedisError, where: str) -> str:
    """One line for an answer from Redis that waiting will not change."""
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError):
        if "without any password configured" in text:
            return f"Redis at {where} has no password, but REDIS_URL gives one: remove it from REDIS_URL"
        if "required" in text.lower():
            return f"Redis at {where} requires a password: put it in REDIS_URL (redis://:PASSWORD@host:port/0)"
        reason = text.rstrip(".")
        return f"Redis at {where} refused relay's credentials ({reason}): check the user and password in REDIS_URL"
    if isinstance(exc, redis.exceptions.InvalidResponse):
        return f"what answers at {where} is not Redis ({text}): check the port in REDIS_URL, and rediss:// for TLS"
    if "DB index is out of range" in text:
        return f"Redis at {where} has no such database: choose a lower number at the end of REDIS_URL"
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return f"Redis at {where} does not let REDIS_URL's user run relay's commands ({text}): grant them (ACL)"
    return f"Redis at {where} refused relay ({type(exc).__name__}: {text}); check REDIS_URL"


def _version(client: redis.Redis) -> str:
    try:
        info: dict[str, Any] = client.info("server")  # type: ignore[assignment]  # redis-py 5 types sync|async
    except redis.RedisError:  # a user without INFO: the version is only for the start line
        return "?"
    return str(info.get("redis_version", "?"))


def check_redis(url: str, *, wait: float, waiting: Callable[[str, str], None] | None = None) -> str:
    """PING Redis until it answers (its version is returned) or ``wait`` seconds have passed.

    A refusal that waiting will not change (a wrong password, a database it does not have) is a
    :class:`StartupError` at once; an unreachable Redis is asked again every half second, and ``waiting``
    is called once (where, why) so the user knows why nothing happens yet.
    """
    where = redis_where(url)
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            client = sync_client(url, timeout=_PING_TIMEOUT)  # a cluster's client reads the slot map here
            try:
                client.ping()
                return _version(client)
            finally:
                client.close()  # type: ignore[no-untyped-call]  # untyped in redis-py 5.2
        except redis.RedisError as exc:
            reason = _unreachable(exc)
            if reason is None:
                raise StartupError(_refusal(exc, where)) from None
        if time.monotonic() + _RETRY_PAUSE > deadline:
            waited = f" (waited {wait:g} s: RELAY_REDIS_STARTUP_WAIT)" if wait else ""
            raise StartupError(
                f"cannot reach Redis at {where}: {reason}; start Redis there or point REDIS_URL at it{waited}"
            )
        if not told and waiting is not None:
            waiting(where, reason)
            told = True
        time.sleep(_RETRY_PAUSE)
