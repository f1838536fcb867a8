"""What every worker task needs, built once in ``on_startup`` and kept in arq's ``ctx``."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import aiohttp
from arq.connections import ArqRedis

from relay.config.settings import Settings
from relay.config.tenants import Signing
from relay.core.crypto import Vault
from relay.core.retry import RetryPolicy
from relay.core.tracking import PollPolicy
from relay.credentials.broker import CredentialBroker
from relay.store.clock import RedisClock
from relay.store.jobs import Store
from workers.backstop import Backstop

__all__ = ["Deps"]


@dataclass(slots=True)
class Deps:
    settings: Settings
    store: Store
    session: aiohttp.ClientSession
    arq: ArqRedis
    vault: Vault
    credentials: CredentialBroker
    #: which secrets sign each owner's events
    signing: Signing
    rng: random.Random = field(default_factory=random.Random)
    #: Redis' clock, the one leases use: signing timestamps, token expiry, authorization waits, HTTP-dates
    clock: RedisClock = field(default_factory=RedisClock)
    #: DriveItem resolutions running in this worker (the fast path), bounded by ``resolve_slots``
    background: set[asyncio.Task[None]] = field(default_factory=set)
    resolve_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(100))
    #: the jobs of those resolutions (a completed monitor's recheck does not start a second one here)
    resolving: set[str] = field(default_factory=set)
    #: the backstops of the poll, delivery and resolution (workers/backstop.py), by kind; none: failures are logged
    backstops: dict[str, Backstop] = field(default_factory=dict)
    #: what planning a poll takes of the settings
    poll_policy: PollPolicy = field(init=False)
    #: when a failed delivery or resolution is tried again (relay/core/retry.py)
    retry_policy: RetryPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.poll_policy = PollPolicy.of(self.settings)
        self.retry_policy = RetryPolicy.of(self.settings)

    @property
    def trusted_hosts(self) -> tuple[str, ...]:
        return self.settings.internal_hosts
