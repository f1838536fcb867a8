"""What went wrong with a request relay made, in words a user can act on: the host and port it went to and the
cause (refused, timeout, TLS, DNS, an HTTP status), never the URL's path or query (a capability may live there).

Used for the attempt records of deliveries (``GET /v1/jobs/{id}/deliveries``, ``relay jobs show``, the dashboard).
"""

from __future__ import annotations

import errno
import ssl
from http import HTTPStatus

import aiohttp
from yarl import URL

from relay.outbound.ssrf import Blocked

__all__ = ["describe_failure", "describe_status", "where"]

#: what the SSRF resolver says of a name that resolves only to internal addresses (relay/outbound/ssrf.py)
_GUARD_WORDS = "resolves only to loopback, private or reserved addresses"


def where(url: URL) -> str:
    """``host:port`` of a URL (the default port written out): what a failure names instead of the URL."""
    host = url.host or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{url.port}"


def describe_status(status: int, url: URL) -> str | None:
    """An answer that is not a success, said with its host: None for a 2xx."""
    if 200 <= status < 300:
        return None
    try:
        phrase = f" {HTTPStatus(status).phrase}"
    except ValueError:
        phrase = ""
    text = f"HTTP {status}{phrase} from {where(url)}"
    if 300 <= status < 400:
        return f"{text} (redirects are not followed: point callbackUrl at the final URL)"
    return text


def describe_failure(exc: BaseException, url: URL, time_limit: float) -> str:
    """A request that got no HTTP answer: why, with the host and port it went to."""
    at = where(url)
    if isinstance(exc, Blocked):
        return f"blocked: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", None) or str(exc.certificate_error)
        return f"TLS: the certificate of {at} was not accepted ({reason})"
    if isinstance(exc, aiohttp.ClientSSLError) or isinstance(getattr(exc, "os_error", None), ssl.SSLError):
        return f"TLS: the handshake with {at} failed ({_strerror(exc)})"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if _GUARD_WORDS in str(exc.os_error):  # the guard's own words name the setting
            return f"blocked: {exc.os_error}"
        return f"DNS: {url.host} could not be resolved ({_strerror(exc)})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _connect_failure(exc, at, tls=url.scheme == "https")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"timeout: {at} did not accept a connection in time"
    if isinstance(exc, TimeoutError):
        return f"timeout: no answer from {at} within {time_limit:g} s (RELAY_REQUEST_TIMEOUT)"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"closed: {at} closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return f"invalid answer from {at} ({type(exc).__name__}: {exc})"
    return f"network: {type(exc).__name__} talking to {at} ({_strerror(exc)})"


def _connect_failure(exc: aiohttp.ClientConnectorError, at: str, *, tls: bool) -> str:
    code = exc.os_error.errno
    if code == errno.ECONNREFUSED:
        return f"refused: nothing accepts connections on {at}"
    if code == errno.ECONNRESET:
        during = " during the TLS handshake (does it speak HTTPS?)" if tls else ""
        return f"reset: {at} dropped the connection{during}"
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"unreachable: no route to {at}"
    if code == errno.ETIMEDOUT:
        return f"timeout: {at} did not accept a connection in time"
    return f"network: cannot connect to {at} ({_strerror(exc)})"


def _strerror(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    return str(os_error or exc) or type(exc).__name__
