"""What every worker task needs, built once in ``on_startup`` and kept in arq's ``ctx``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import aiohttp
from arq.connections import ArqRedis

from relay.crypto import Vault
from relay.settings import Settings
from relay.store import Store

__all__ = ["Deps"]


@dataclass(slots=True)
class Deps:
    settings: Settings
    store: Store
    session: aiohttp.ClientSession
    arq: ArqRedis
    vault: Vault
    rng: random.Random = field(default_factory=random.Random)

    @property
    def trusted_hosts(self) -> tuple[str, ...]:
        return self.settings.callback_allowed_hosts
