"""Server-side request forgery guard, applied where connections are made.

Every outgoing request (monitor, DriveItem, callback) goes through :func:`check_url` before it is
sent and through :class:`GuardedResolver` when its host name is resolved, so the addresses that
were checked are the only ones connected to (no DNS-rebinding window). aiohttp does not call the
resolver for IP-literal hosts, which is why :func:`check_url` checks those itself.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from relay.core.hosts import host_matches, host_name_problem

__all__ = ["ALLOWED_PORTS", "Blocked", "GuardedResolver", "address_allowed", "check_url"]

_LOOPBACK_NAMES = ("localhost", "*.localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
#: refused although Python's ``ipaddress`` (3.11) counts them global: shared (carrier-grade NAT), the
#: deprecated 6to4 relay anycast, IPv6 site-local (deprecated, still routed inside some networks) and the
#: IPv6 documentation prefix of 2024
_NOT_GLOBAL = tuple(ipaddress.ip_network(n) for n in ("100.64.0.0/10", "192.88.99.0/24", "fec0::/10", "3fff::/20"))
#: NAT64's well-known prefix: the IPv4 address in its last 32 bits decides (RFC 6052)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: the ports relay sends HTTP to: the web's own two, and the unprivileged range. Others (0, which cannot be
#: connected to; 22, 25, 53... which speak other protocols) are refused, at registration and before each request
ALLOWED_PORTS = "80, 443, 1024-65535"
#: hex, octal, short and integer IPv4 forms (``0x7f.1``, ``0177.0.0.1``, ``127.1``, ``2130706433``) that
#: the system resolver reads as addresses
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)


#: what every refusal of an internal address says: the setting that allows one
_ALLOW_HINT = "to allow it, add its host to RELAY_INTERNAL_HOSTS"


class Blocked(Exception):
    """The URL or the address it resolves to is not one relay may connect to."""


def address_allowed(ip: str) -> bool:
    """True only for public unicast addresses."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address):  # the IPv4 address an IPv6 form carries is the one reached
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        elif addr.sixtofour is not None:
            addr = addr.sixtofour
        elif addr in _NAT64:
            addr = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if any(addr in network for network in _NOT_GLOBAL if network.version == addr.version):
        return False
    return not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or not addr.is_global
    )


def _literal_address(host: str) -> str | None:
    """The address an IP-literal host names (in any form the system resolver reads), or None for a name."""
    bare = host.strip("[]").rstrip(".")
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if _NUMERIC_HOST.match(bare):
        try:
            return str(ipaddress.IPv4Address(socket.inet_aton(bare)))
        except OSError:
            return None
    return None


def _port_allowed(port: int | None) -> bool:
    return port is not None and (port in (80, 443) or 1024 <= port <= 65535)


def check_url(url: str | URL, trusted_hosts: Iterable[str]) -> URL:
    """Parse and check a URL relay is about to request; raise :class:`Blocked` with a reason."""
    # a callback or monitor URL is requested again and again: checked once each, as text or parsed (a monitor's
    # comes parsed: workers/poll.py)
    checked = _checked(url, tuple(trusted_hosts))
    if isinstance(checked, str):
        raise Blocked(checked)
    return checked


#: as many as the worker keeps parsed monitor URLs (workers/poll.py)
@functools.lru_cache(maxsize=16384)
def _checked(url: str | URL, trusted_hosts: tuple[str, ...]) -> URL | str:
    """:func:`check_url` of a URL: the parsed URL, or why it is refused (a pure function)."""
    try:
        return _check(url, trusted_hosts)
    except Blocked as refused:
        return str(refused)


def _check(url: str | URL, trusted_hosts: Iterable[str]) -> URL:
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        host = parsed.host  # decoded lazily: an xn-- label that is not IDNA raises here
    except ValueError:
        raise Blocked("the URL does not parse") from None
    if parsed.scheme not in ("http", "https"):
        raise Blocked("only http and https URLs are allowed")
    if not host:
        raise Blocked("the URL has no host")
    if parsed.user is not None or parsed.password is not None:
        raise Blocked("URLs with embedded credentials are not allowed")
    if not _port_allowed(parsed.port):
        raise Blocked(f"port {parsed.port} is not one relay connects to ({ALLOWED_PORTS})")
    refusal = _host_refusal(host, tuple(trusted_hosts))
    if refusal is not None:
        raise Blocked(refusal)
    return parsed


@functools.lru_cache(maxsize=4096)
def _host_refusal(host: str, trusted_hosts: tuple[str, ...]) -> str | None:
    """Why a host may not be requested, or None; a pure function of its arguments, so remembered."""
    problem = host_name_problem(host)  # a name the resolver cannot encode fails every request with a UnicodeError
    if problem is not None:
        return problem
    if host_matches(host, trusted_hosts):
        return None
    literal = _literal_address(host)
    if literal is not None and not address_allowed(literal):
        return f"the URL points at a loopback, private or reserved address; {_ALLOW_HINT}"
    if host_matches(host, _LOOPBACK_NAMES):
        return f"the URL points at a loopback name; {_ALLOW_HINT}"
    return None


class GuardedResolver(AbstractResolver):
    """Resolves with the default resolver, then keeps only public addresses (unless the host is trusted)."""

    def __init__(self, trusted_hosts: Iterable[str], inner: AbstractResolver | None = None) -> None:
        self._trusted = tuple(trusted_hosts)
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if host_matches(host, self._trusted):
            return results
        allowed = [r for r in results if address_allowed(r["host"])]
        if not allowed:
            raise OSError(f"{host} resolves only to loopback, private or reserved addresses; {_ALLOW_HINT}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
