"""Talking to the bench's peers: the simulator and receiver (their /bench endpoints) and Redis (registering).

Registering through :meth:`Store.register` writes what ``POST /v1/jobs`` writes, without the HTTP
part: sections that need thousands of jobs quickly (4, 5, 6) use it; section 3 measures the API itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import aiohttp

from relay.core import jsonfast
from relay.core.crypto import Vault
from relay.core.schema import Job
from relay.store.jobs import Store

__all__ = [
    "DRIVE_ID",
    "SIM_TOKEN",
    "job_fields",
    "received",
    "received_count",
    "register",
    "reset_receiver",
    "sim_create",
    "sim_polls",
    "sim_total",
]

SIM_TOKEN = "sim-token"
DRIVE_ID = "b!Sim5ulatedDr1ve-kXd9JpQ0bN2cVtY7wL4aZe8RgU3fHs6iOmT"


async def register(
    store: Store, specs: Iterable[tuple[str, Job, str]], parallel: int = 32, *, seal: Vault | None = None
) -> int:
    """Store.register each (job id, fields, monitor URL), ``parallel`` at a time: what the API does (with ``seal``,
    the monitor URL stored sealed as ``relay serve`` stores it; without, in clear)."""
    it = iter(specs)
    count = 0

    async def run() -> None:
        nonlocal count
        for job_id, fields, url in it:
            await store.register(job_id, fields, url, sealed_url=seal.seal(url) if seal is not None else None)
            count += 1

    await asyncio.gather(*(run() for _ in range(parallel)))
    return count


def job_fields(
    vault: Vault,
    callback: str,
    monitor_host: str = "127.0.0.1",
    *,
    drive_item_url: str | None = None,
    authorization: str | None = None,
    metadata: dict[str, Any] | None = None,
    owner: str = "public",
    progress_interval: float | None = None,
) -> Job:
    """The record ``POST /v1/jobs`` stores (relay/api/registration.py ``_fields`` and ``_store``), made with keywords
    as the API makes it: nothing it would not store (the id is the key, not a field), metadata as compact JSON."""
    fields = Job(owner=owner, callback_url=callback, monitor_host=monitor_host)
    if drive_item_url:
        fields.drive_item_url = drive_item_url
    if authorization:
        fields.authorization = vault.encrypt(authorization)
    if metadata is not None:
        fields.metadata = jsonfast.dumps(metadata).decode()
    if progress_interval is not None:
        fields.progress_interval = float(progress_interval)
    return fields


def sim_job_fields(vault: Vault, sim: str, receiver: str, **extra: Any) -> Job:
    """:func:`job_fields` of a job on the simulator: its callback the receiver's ``/hook``, its DriveItem from the
    simulator with the simulator's token (``extra``: metadata, progress_interval)."""
    return job_fields(
        vault,
        f"{receiver}/hook",
        drive_item_url=f"{sim}/v1.0/me/drive/items/{{resourceId}}",
        authorization=f"Bearer {SIM_TOKEN}",
        **extra,
    )


async def sim_create(
    http: aiohttp.ClientSession, sim: str, ops: list[dict[str, Any]], *, record: bool = False
) -> list[dict[str, Any]]:
    """Create simulator operations with the given knobs; each {"id", "monitorUrl", "resourceId", "created"}."""
    out: list[dict[str, Any]] = []
    for i in range(0, len(ops), 2000):
        async with http.post(f"{sim}/bench/create", json={"ops": ops[i : i + 2000], "record": record}) as r:
            out.extend((await r.json())["ops"])
    return out


async def sim_polls(http: aiohttp.ClientSession, sim: str, ids: list[str] | None = None) -> dict[str, Any]:
    async with http.post(f"{sim}/bench/polls", json={"ids": ids or []}) as resp:
        result: dict[str, Any] = await resp.json()
        return result


async def sim_total(http: aiohttp.ClientSession, sim: str) -> int:
    """Monitor GETs the simulator has answered so far."""
    async with http.get(f"{sim}/sim/stats") as resp:
        return int((await resp.json())["polls"])


async def received(http: aiohttp.ClientSession, receiver: str, kinds: str = "") -> list[list[Any]]:
    """The receiver's records [time, kind, jobId, percentage], of the given kinds (c, f, p) or all."""
    async with http.get(f"{receiver}/bench/dump", params={"kinds": kinds} if kinds else None) as resp:
        rows: list[list[Any]] = (await resp.json())["records"]
        return rows


async def received_count(http: aiohttp.ClientSession, receiver: str) -> int:
    async with http.get(f"{receiver}/bench/count") as resp:
        return int((await resp.json())["count"])


async def reset_receiver(http: aiohttp.ClientSession, receiver: str) -> None:
    async with http.post(f"{receiver}/bench/reset") as resp:
        await resp.read()
