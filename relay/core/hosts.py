"""Host patterns: which hosts a setting's list (``*.sharepoint.com``, ``graph.microsoft.com``) lets a URL reach.

Pure: the SSRF guard (:mod:`relay.outbound.ssrf`), the credential broker, the API's checks of what it is given and
the workers' checks before each request all match hosts this one way.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

__all__ = ["host_matches"]


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """``host`` matches an exact name or a ``*.example.com`` pattern (case-insensitive)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern == host or ("*" in pattern and fnmatch.fnmatchcase(host, pattern)):
            return True
    return False
