"""``REDIS_URL`` forms: a plain Redis URL, a Sentinel URL naming the Sentinels and the service, or a Cluster URL
naming some of the cluster's nodes.

``redis+sentinel://[[user]:password@]host1[:26379],host2[:26379]/<service>[/<db>][?options]``
(``rediss+sentinel://`` for TLS). The user and password are the data nodes' (as in a plain URL);
``sentinel_username`` / ``sentinel_password`` in the query are the Sentinels' own, when they require
one. Every other query option means what it means in a plain URL (redis-py's ``parse_url`` reads
them: ``ssl_ca_certs``, ``ssl_cert_reqs``, ``socket_timeout``, ...) and applies to Sentinels and data
nodes alike.

``redis+cluster://[[user]:password@]host1[:6379],host2[:6379],...[/][?options]`` (``rediss+cluster://`` for
TLS): the hosts are startup nodes (any one reachable is enough; listing every node survives losing some), the user
and password are every node's, the query options are redis-py's connection options (:data:`CLUSTER_OPTIONS`). A
cluster has only database 0: a path other than ``/`` or ``/0`` is an error. Pure parsing, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

from redis.asyncio.connection import parse_url

__all__ = [
    "CLUSTER_OPTIONS",
    "CLUSTER_SCHEMES",
    "PLAIN_SCHEMES",
    "SENTINEL_SCHEMES",
    "ClusterURL",
    "SentinelURL",
    "is_cluster_url",
    "is_sentinel_url",
    "parse_cluster_url",
    "parse_sentinel_url",
    "plain_url_problem",
    "redis_where",
]

PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_CLUSTER_PORT = 6379
#: the query options a cluster URL takes: redis-py's connection options that its cluster client accepts (a plain
#: URL's ``retry_on_timeout`` or ``timeout`` it does not; relay sets the retries and decoding itself)
CLUSTER_OPTIONS = frozenset(
    {
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "max_connections",
        "health_check_interval",
        "client_name",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_cert_reqs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_ciphers",
    }
)
_DB_PATH = re.compile(r"^/?(\d+/?)?$")
#: how each character that ends a URL's authority is written inside a user name or password
_ENCODED = {"/": "%2F", "?": "%3F", "#": "%23"}
#: what parse_url derives from a URL's location rather than its query; a Sentinel URL sets these itself
_LOCATION_KEYS = frozenset({"host", "port", "db", "path", "username", "password", "connection_class"})


def _with_auth(out: dict[str, Any], tls: bool, username: str | None, password: str | None) -> dict[str, Any]:
    """``out`` with TLS turned on and the user name and password set, each only where the URL gave it."""
    if tls:
        out["ssl"] = True
    if username:
        out["username"] = username
    if password:
        out["password"] = password
    return out


@dataclass(frozen=True, slots=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    #: connection options from the query string, as redis-py reads them from a plain URL
    options: dict[str, Any] = field(default_factory=dict)

    def data_kwargs(self) -> dict[str, Any]:
        """Connection arguments for the data nodes (the primary Sentinel names)."""
        return _with_auth({**self.options, "db": self.db}, self.tls, self.username, self.password)

    def sentinel_kwargs(self) -> dict[str, Any]:
        """Connection arguments for the Sentinels themselves: the same TLS and socket options, their own auth."""
        shared = {k: v for k, v in self.options.items() if k.startswith(("ssl_", "socket_")) or k == "retry_on_timeout"}
        return _with_auth(shared, self.tls, self.sentinel_username, self.sentinel_password)


@dataclass(frozen=True, slots=True)
class ClusterURL:
    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: connection options from the query string (:data:`CLUSTER_OPTIONS`), as redis-py reads them from a plain URL
    options: dict[str, Any] = field(default_factory=dict)

    def node_kwargs(self) -> dict[str, Any]:
        """Connection arguments for every node of the cluster (redis-py's ``RedisCluster`` takes them)."""
        return _with_auth(dict(self.options), self.tls, self.username, self.password)


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def _userinfo_cut(rest: str, *, unix: bool = False) -> str | None:
    """The character that ended the authority inside a user name or password (``:pa/ss@host``), or None.

    An ``@`` after the authority's end, before any ``=`` (a query value may hold one), means the user
    information went on past a ``/``, ``?`` or ``#`` that should have been percent-encoded.
    """
    end = min((i for i in (rest.find(c) for c in _ENCODED) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if unix and (not authority or "@" in authority):  # unix://[user:pw@]/path: a path may hold an @
        return None
    if "@" in tail and "=" not in tail.partition("@")[0]:
        return tail[0]
    return None


def _cut_message(char: str) -> str:
    return (
        f"the password (or user name) holds an unescaped {char!r}: percent-encode it as {_ENCODED[char]} "
        "(and an '@' in it as %40)"
    )


def plain_url_problem(url: str) -> str | None:
    """What is wrong with a ``redis://``, ``rediss://`` or ``unix://`` URL, in words that repeat none of it."""
    scheme, _, rest = url.partition("://")
    cut = _userinfo_cut(rest, unix=scheme.lower() == "unix")
    if cut is not None:
        return _cut_message(cut)
    try:
        parts = urlsplit(url)
        _ = parts.port  # read for its ValueError
    except ValueError as exc:
        if "IPv6" in str(exc):
            return "the host is not a valid name or [IPv6] address"
        return "the port is not a number from 1 to 65535"
    if scheme.lower() != "unix" and not _DB_PATH.match(unquote(parts.path)):
        return "the path is the database number: redis://host:port/<db>"
    return None


def parse_sentinel_url(url: str) -> SentinelURL:
    """Read a Sentinel URL; ``ValueError`` with a one-line reason (never echoing the password) if it is not one."""
    scheme, parts, username, password, hosts = _multi_host(url, SENTINEL_SCHEMES, "a Sentinel URL")
    sentinels = tuple(_host_port(item, DEFAULT_SENTINEL_PORT, "Sentinel") for item in hosts.split(","))
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not segments:
        raise ValueError("a Sentinel URL names the monitored service in its path: .../<service>[/<db>]")
    if len(segments) > 2:
        raise ValueError("a Sentinel URL's path is /<service>[/<db>]")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError("the database in a Sentinel URL's path must be a number: /<service>/<db>")
        db = int(segments[1])
    query = dict(parse_qsl(parts.query, keep_blank_values=False))
    sentinel_username = query.pop("sentinel_username", None)
    sentinel_password = query.pop("sentinel_password", None)
    if "db" in query:
        raise ValueError("a Sentinel URL takes its database from the path (/<service>/<db>), not ?db=")
    plain = ("rediss" if scheme.startswith("rediss") else "redis") + "://localhost/"
    options = {k: v for k, v in parse_url(plain + "?" + urlencode(query)).items() if k not in _LOCATION_KEYS}
    return SentinelURL(
        sentinels=sentinels,
        service=segments[0],
        db=db,
        tls=scheme.startswith("rediss"),
        username=username,
        password=password,
        sentinel_username=sentinel_username or None,
        sentinel_password=sentinel_password or None,
        options=options,
    )


def parse_cluster_url(url: str) -> ClusterURL:
    """Read a Cluster URL; ``ValueError`` with a one-line reason (never echoing the password) if it is not one."""
    scheme, parts, username, password, hosts = _multi_host(url, CLUSTER_SCHEMES, "a Cluster URL")
    nodes = tuple(_host_port(item, DEFAULT_CLUSTER_PORT, "node") for item in hosts.split(","))
    if unquote(parts.path) not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0: a Cluster URL's path is / or /0 (or none)")
    query = dict(parse_qsl(parts.query, keep_blank_values=False))
    if "db" in query:
        raise ValueError("a Redis Cluster has only database 0: a Cluster URL takes no ?db=")
    unknown = sorted(set(query) - CLUSTER_OPTIONS)
    if unknown:
        raise ValueError(
            f"a Cluster URL does not take the option {unknown[0]!r}; it takes {', '.join(sorted(CLUSTER_OPTIONS))}"
        )
    plain = ("rediss" if scheme.startswith("rediss") else "redis") + "://localhost/"
    options = {k: v for k, v in parse_url(plain + "?" + urlencode(query)).items() if k not in _LOCATION_KEYS}
    return ClusterURL(
        nodes=nodes,
        tls=scheme.startswith("rediss"),
        username=username,
        password=password,
        options=options,
    )


def _multi_host(url: str, schemes: tuple[str, ...], what: str) -> tuple[str, SplitResult, str | None, str | None, str]:
    """The parts a Sentinel or Cluster URL shares: its scheme (lower case), the URL split, the user name and password
    (unquoted; None when absent) and the comma-separated hosts; ``ValueError`` (never echoing the password)."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in schemes:
        raise ValueError(f"{what} starts with {' or '.join(s + '://' for s in schemes)}")
    cut = _userinfo_cut(rest)
    if cut is not None:
        raise ValueError(_cut_message(cut))
    parts = urlsplit("//" + rest)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", parts.netloc
    username, colon, password = userinfo.partition(":")
    return scheme, parts, unquote(username) or None, unquote(password) if colon and password else None, hosts


def _host_port(item: str, default_port: int, what: str) -> tuple[str, int]:
    kind = "Sentinel" if what == "Sentinel" else "Cluster"
    listed = "Sentinels" if what == "Sentinel" else "nodes"
    item = item.strip()
    if item.startswith("["):  # [v6]:port
        host, _, tail = item[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"a {kind} URL lists its {listed} as host[:port],host[:port],...; one host is empty")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"a {what}'s port must be 1-65535")
    return host, int(port_text)


def redis_where(url: str) -> str:
    """Where a Redis URL points, without its user, password or query: safe to print and log."""
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        sentinels = ",".join(f"{host}:{port}" for host, port in target.sentinels)
        scheme = "rediss+sentinel" if target.tls else "redis+sentinel"
        return f"{scheme}://{sentinels}/{target.service}/{target.db}"
    if is_cluster_url(url):
        cluster = parse_cluster_url(url)
        nodes = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in cluster.nodes)
        return f"{'rediss+cluster' if cluster.tls else 'redis+cluster'}://{nodes}/0"
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    return f"{parts.scheme}://{host}:{port}{parts.path or '/0'}"
