"""Encryption at rest of the ``authorization`` header value callers give relay.

Keys come from ``RELAY_ENCRYPTION_KEY`` (comma-separated; the first encrypts, all decrypt, so keys
can be rotated), else they are derived from ``RELAY_SIGNING_SECRETS``. A value that is already a
Fernet key is used as is; any other string is stretched with SHA-256 into one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = ["InvalidToken", "Vault"]


def _fernet_key(material: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(material.encode())
        if len(raw) == 32 and len(material) == 44:
            return material.encode()
    except (binascii.Error, ValueError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(b"relay-authorization-v1:" + material.encode()).digest())


class Vault:
    def __init__(self, materials: Iterable[str]) -> None:
        keys = [Fernet(_fernet_key(m)) for m in materials]
        self._fernet = MultiFernet(keys) if keys else None

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def encrypt(self, value: str) -> str:
        if self._fernet is None:
            raise RuntimeError("no key material to encrypt with")
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        """Raises :class:`InvalidToken` for a value no current key encrypted."""
        if self._fernet is None:
            raise InvalidToken
        return self._fernet.decrypt(token.encode()).decode()
