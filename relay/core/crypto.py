"""Encryption at rest of what callers give relay as bearer capabilities: ``authorization`` and monitor URLs.

Keys come from ``RELAY_ENCRYPTION_KEY`` (comma-separated; the first encrypts, all decrypt, so keys
can be rotated), else they are derived from ``RELAY_SIGNING_SECRETS``. A value that is already a
Fernet key is used as is; any other string is stretched with SHA-256 into one.

Values are sealed with AES-256-GCM (``g1.`` + base64url of nonce, ciphertext and tag: one call of
the cryptography library, a quarter of Fernet's cost on the registration path); the AES key is
derived from the Fernet key. The base64 is written without its ``=`` padding (one or two characters of every
sealed value that Redis would keep for nothing: for a 120-character monitor URL, 201 characters instead of 203,
which keeps the monitor hash's listpack in jemalloc's 256 B class, docs/performance.md "Memory"), unless the vault
is made ``padded`` (``RELAY_STORE_LEGACY_FORMAT``: versions before 2026-12-07 refuse a value without it, a rolling
upgrade); values sealed with it, by earlier versions or so, and Fernet tokens, still decrypt.

The cryptography library (its Rust extension: ~8.5 MiB resident) is imported on the first value sealed or
opened, not when the vault is made: a ``relay serve`` or ``relay worker`` at rest holds no job and never loads it
(docs/performance.md, "Memory").
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["InvalidToken", "Vault"]


class InvalidToken(Exception):  # the name cryptography's Fernet gives the same refusal
    """A sealed value no current key opens (or not a sealed value at all)."""


_PREFIX = "g1."
_NONCE = 12


def _fernet_key(material: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(material.encode())
        if len(raw) == 32 and len(material) == 44:
            return material.encode()
    except (binascii.Error, ValueError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(b"relay-authorization-v1:" + material.encode()).digest())


def _aes_key(fernet_key: bytes) -> bytes:
    return hashlib.sha256(b"relay-authorization-aesgcm-v1:" + fernet_key).digest()


class Vault:
    def __init__(self, materials: Iterable[str], *, padded: bool = False) -> None:
        """``padded``: seal with base64's ``=`` padding, which versions before 2026-12-07 require (the module doc)."""
        self._padded = padded
        self._fernet_keys = [_fernet_key(m) for m in materials]
        self._ciphers: list[AESGCM] | None = None  # made on first use (the import is ~8.5 MiB resident)
        self._refused: tuple[type[Exception], ...] = (ValueError,)  # and cryptography's InvalidTag then
        # a worker polls the same monitors again and again: their URLs are opened once each
        self.reveal = functools.lru_cache(maxsize=16384)(self._reveal)

    @property
    def enabled(self) -> bool:
        return bool(self._fernet_keys)

    @property
    def _aead(self) -> list[AESGCM]:
        if self._ciphers is None:
            from cryptography.exceptions import InvalidTag  # see the module doc
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._refused = (InvalidTag, ValueError)
            self._ciphers = [AESGCM(_aes_key(k)) for k in self._fernet_keys]
        return self._ciphers

    def encrypt(self, value: str) -> str:
        if not self._fernet_keys:
            raise RuntimeError("no key material to encrypt with")
        nonce = os.urandom(_NONCE)
        sealed = self._aead[0].encrypt(nonce, value.encode(), None)
        body = base64.urlsafe_b64encode(nonce + sealed).decode()
        return _PREFIX + (body if self._padded else body.rstrip("="))  # padding or not: see the module doc

    def decrypt(self, token: str) -> str:
        """Raises :class:`InvalidToken` for a value no current key encrypted."""
        if not token.startswith(_PREFIX):
            return self._decrypt_fernet(token)
        body = token[len(_PREFIX) :]
        try:  # padded as earlier versions wrote it, or not (a length of 1 mod 4 is no base64: refused)
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise InvalidToken from None
        nonce, sealed = raw[:_NONCE], raw[_NONCE:]
        for aead in self._aead:
            try:
                return aead.decrypt(nonce, sealed, None).decode()
            except self._refused:
                continue
        raise InvalidToken

    def _decrypt_fernet(self, token: str) -> str:
        """A Fernet token, as versions before AES-GCM sealed values."""
        if not self._fernet_keys:
            raise InvalidToken
        from cryptography.fernet import Fernet, MultiFernet  # rare: values sealed long ago
        from cryptography.fernet import InvalidToken as FernetRefused

        try:
            return MultiFernet([Fernet(k) for k in self._fernet_keys]).decrypt(token.encode()).decode()
        except FernetRefused:
            raise InvalidToken from None

    def seal(self, value: str) -> str:
        """``value`` encrypted when there is key material, else as is (a monitor URL on an API without keys)."""
        return self.encrypt(value) if self._fernet_keys else value

    def _reveal(self, stored: str) -> str:
        """What :meth:`seal` stored: decrypted when sealed, as is when written in clear (earlier versions)."""
        return self.decrypt(stored) if stored.startswith(_PREFIX) else stored
