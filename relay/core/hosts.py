"""Host patterns: which hosts a setting's list (``*.sharepoint.com``, ``graph.microsoft.com``) lets a URL reach.

Pure: the SSRF guard (:mod:`relay.outbound.ssrf`), the credential broker, the API's checks of what it is given and
the workers' checks before each request all match hosts this one way.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
from collections.abc import Iterable

__all__ = ["host_matches", "host_name_problem"]

#: DNS limits (RFC 1035): a label of 63 octets at most, a name of 253 characters (without its final dot)
MAX_LABEL = 63
MAX_NAME = 253


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """``host`` matches an exact name or a ``*.example.com`` pattern (case-insensitive)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern == host or ("*" in pattern and fnmatch.fnmatchcase(host, pattern)):
            return True
    return False


@functools.lru_cache(maxsize=4096)  # a pure function of the name; a registration checks the same hosts again and again
def host_name_problem(host: str | None) -> str | None:
    """Why ``host`` (a URL's host, IPv6 without brackets) cannot be looked up or connected to, or None.

    A name must encode with IDNA as the resolver will encode it (Python's ``idna`` codec, which is what
    ``getaddrinfo`` is given): no empty label, no label over 63 characters, a name of at most 253; an
    ``xn--`` label must decode. Checked at registration, so that the request made later cannot fail with
    a ``UnicodeError`` again and again.
    """
    if not host:
        return "has no host"
    name = host[:-1] if host.endswith(".") else host
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return None
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return "the host is not a valid DNS name (an empty label, a label over 63 characters, or bad IDNA)"
    if len(ascii_name) > MAX_NAME:
        return f"the host name is over {MAX_NAME} characters"
    for label in ascii_name.split("."):
        if not label or len(label) > MAX_LABEL:
            return f"the host has an empty label or one over {MAX_LABEL} characters"
        if label[:4].lower() == "xn--":
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                return "the host has an xn-- label that is not valid IDNA"
    return None
