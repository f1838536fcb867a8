"""Tenants: who owns a job (a digest of the API token that made it), and which secrets sign its events.

Each tenant signs with its own secrets, so that nothing one tenant's receiver holds verifies another's events:

* without ``RELAY_API_TOKENS`` (one app on loopback, owner ``public``), and with tokens that all make one
  tenant, events are signed with ``RELAY_SIGNING_SECRETS``, unless that tenant has secrets of its own;
* with several tenants, each signs with its ``RELAY_TENANT_SIGNING_SECRETS`` (settings refuse to start without
  them: :meth:`relay.config.settings.Settings._tenants_sign_apart`);
* a job registered with its own ``secret`` is signed with that secret alone: it replaces its tenant's.

Jobs of an owner the settings no longer name (a token since removed) sign with ``RELAY_SIGNING_SECRETS``; with
none set, they are not signed at all, and so not sent (``workers/deliver.py`` records why).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from relay.config.settings import Settings

__all__ = ["PUBLIC", "Signing", "owner_of"]

#: the owner of every job when the API has no tokens
PUBLIC = "public"


@functools.lru_cache(maxsize=256)
def owner_of(token: str | None) -> str:
    """Jobs belong to the token that made them, stored as a digest, never as the token."""
    if token is None:
        return PUBLIC
    return hashlib.sha256(token.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Signing:
    """The secrets that sign each owner's events (the first of each is current; all sign, for rotation)."""

    by_owner: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: RELAY_SIGNING_SECRETS: the single tenant's, and those of owners no token names any more
    fallback: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings: Settings) -> Signing:
        names = dict(settings.token_names)
        own: dict[str, list[str]] = {}
        for name, secret in settings.tenant_signing_secrets:
            own.setdefault(name, []).append(secret)
        by_owner = {
            owner_of(token): tuple(own[names[token]]) for token in settings.api_tokens if names.get(token) in own
        }
        return cls(by_owner, settings.signing_secrets)

    def secrets(self, owner: str, job_secret: str = "") -> tuple[str, ...]:
        """What signs an event of ``owner``'s job: the job's own secret when it has one, else its tenant's."""
        if job_secret:
            return (job_secret,)
        return self.by_owner.get(owner, self.fallback)
