"""The outgoing HTTP client: one guarded ``ClientSession`` per process and a bounded fetch."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from relay import __version__
from relay.outbound.ssrf import Blocked, GuardedResolver, check_url

__all__ = ["Blocked", "Response", "create_session", "fetch", "read_body", "request_options"]

USER_AGENT = f"relay/{__version__} (+https://github.com/relay-webhooks/relay)"


@dataclass(slots=True)  # not frozen: CONTRIBUTING.md (made on every operation)
class Response:
    status: int
    headers: CIMultiDictProxy[str] | CIMultiDict[str]
    body: bytes
    too_large: bool
    elapsed: float


def create_session(trusted_hosts: Iterable[str], *, limit: int = 200) -> aiohttp.ClientSession:
    """Session with the SSRF-guarded resolver, no cookies kept and no environment proxies."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(trusted_hosts), limit=limit, limit_per_host=0, ttl_dns_cache=60
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
        auto_decompress=True,
    )


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    *,
    trusted_hosts: Iterable[str],
    time_limit: float,
    max_body: int,
    headers: Mapping[str, str] | None = None,
    data: bytes | str | None = None,
    own_headers: bool = False,
) -> Response:
    """One request, no redirects followed, body read up to ``max_body`` bytes.

    Raises :class:`Blocked` for a refused URL and ``aiohttp.ClientError`` / ``TimeoutError``
    for transport failures. ``own_headers``: relay made every header value itself (a delivery's signature
    headers), so none is searched for control characters.
    """
    target = check_url(url, trusted_hosts)
    if headers is not None and not own_headers and any(_CONTROL.search(value) for value in headers.values()):
        # aiohttp would raise ValueError on every try; the value itself (a token, maybe) is never said
        raise Blocked("a header value holds a control character (U+0000-U+001F or U+007F)")
    started = time.monotonic()
    async with session.request(method, target, headers=headers, data=data, **request_options(time_limit)) as resp:
        body, too_large = await read_body(resp, max_body)
        return Response(resp.status, resp.headers, body, too_large, time.monotonic() - started)


@functools.lru_cache(maxsize=16)
def request_options(time_limit: float) -> dict[str, Any]:
    """What every request relay makes is given beside its method, URL, headers and body: no redirects followed,
    ``time_limit`` seconds in all (5 at most to connect), lines and header fields up to 16 KiB. Made once per
    time limit (read only: ``session.request(..., **request_options(t))``)."""
    timeout = aiohttp.ClientTimeout(total=time_limit, sock_connect=min(5.0, time_limit))
    return {"allow_redirects": False, "timeout": timeout, "max_line_size": 16384, "max_field_size": 16384}


async def read_body(resp: aiohttp.ClientResponse, max_body: int) -> tuple[bytes, bool]:
    """An answer's body, read up to ``max_body`` bytes, and whether there was more (read to its end, the
    connection goes back to the pool)."""
    if resp.content.at_eof():  # no body (a 204, or Content-Length: 0): nothing to read
        return b"", False
    length = resp.content_length
    if length is not None and length <= max_body and not resp.headers.get("Content-Encoding"):
        body = await resp.read()  # declared and small: one read (aiohttp stops at Content-Length)
        return body, len(body) > max_body
    buffer = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        buffer.extend(chunk)
        if len(buffer) > max_body:
            return bytes(buffer), True
    return bytes(buffer), False


_CONTROL = re.compile("[\x00-\x1f\x7f]")
