"""Access tokens with a lifetime for the Graph simulator, shaped like Graph's own (a JWT with an ``exp`` claim).

Graph access tokens live 60-90 minutes, and a large copy runs for hours: the simulator's tokens expire
too, so what relay does when the DriveItem request is refused can be shown against it. A token past its
``exp`` (or never issued) gets Graph's ``401 InvalidAuthenticationToken`` answer.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable

__all__ = ["TokenIssuer"]

_HEADER = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()


def _segment(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


class TokenIssuer:
    """The bearer tokens the simulated Graph accepts: the fixed one (``--token``) and issued ones."""

    def __init__(self, static: str, *, ttl: float | None = None) -> None:
        """``ttl``: lifetime in seconds of the fixed token (from now) and the default of issued ones; None: forever."""
        self.ttl = ttl
        self._expiry: dict[str, float | None] = {static: None if ttl is None else time.time() + ttl}
        self.issued: list[str] = []
        #: other issuers whose tokens are taken too (e.g. a token endpoint double an app-only credential asks)
        self.trusted: list[Callable[[str], bool]] = []

    def issue(self, ttl: float | None = None) -> tuple[str, float | None]:
        """A new token and its expiry (epoch seconds; None: never), JWT-shaped with ``exp`` when it expires."""
        lifetime = self.ttl if ttl is None else ttl
        now = time.time()
        expires = None if lifetime is None else now + lifetime
        claims: dict[str, object] = {"aud": "https://graph.microsoft.com", "iat": int(now), "jti": secrets.token_hex(8)}
        if expires is not None:
            claims["exp"] = int(expires) if expires == int(expires) else int(expires) + 1
        token = f"{_HEADER}.{_segment(claims)}.{secrets.token_urlsafe(16)}"
        self._expiry[token] = expires
        self.issued.append(token)
        return token, expires

    def expire_all(self) -> None:
        """Every token known so far stops being accepted, as if its lifetime had run out."""
        past = time.time() - 1
        for token in self._expiry:
            self._expiry[token] = past

    def refusal(self, authorization: str) -> str | None:
        """None when the ``Authorization`` header carries a live token, else Graph's 401 message."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "Access token is empty or invalid."
        for known, expires in self._expiry.items():
            if secrets.compare_digest(token, known):
                if expires is not None and time.time() >= expires:
                    return "Lifetime validation failed, the token is expired."
                return None
        if any(trusts(token) for trusts in self.trusted):
            return None
        return "Access token is empty or invalid."
