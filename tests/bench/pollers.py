"""Section 5, beside relay: the pollers users would run instead, run against the same simulator.

* a fixed 1 s poller (rclone's way of waiting for a OneDrive copy) and a fixed 5 s poller (the Graph .NET SDK's
  monitor), written as a user would: GET the monitor without following redirects, then a ``303``, a ``200``
  with the item, or a ``status`` of ``completed`` is the end, a ``status`` of ``failed`` (or ``cancelled``,
  ``deleteFailed``) a failure, anything else means poll again;
* azure-core's own ``AsyncLROPoller`` with its default polling method (``AsyncLROBasePolling``: the
  ``Retry-After`` of an answer, else its polling interval, 30 s by default), over a pipeline with azure-core's
  redirect and retry policies (as SDKs built on it configure theirs; no credential policy: Graph's monitor URLs
  refuse a request that carries a token), started from the copy's real ``202``.

Time-scaled like the rest of section 5 (1/10): the pollers wait 0.1 s, 0.5 s and 3 s. Each runs on the first
``POLLER_JOBS`` copies of section 5's mix (same durations), all three at once after relay's run; then every
poller meets each monitor form the simulator serves once (``forms``), and what it made of it is printed.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from tests.bench import peers
from tests.bench.measure import pct

__all__ = ["FORMS", "POLLERS", "PollerRun", "forms", "run_pollers"]

#: real-time seconds between polls (scaled by 1/10 when run); azure-core's is its default polling interval
POLLERS = {"fixed 1 s poller": 1.0, "fixed 5 s poller": 5.0, "azure-core AsyncLROPoller": 30.0}
#: the monitor forms: knobs of the simulator's copy, and what the end is
FORMS = {
    "303 See Other": {"completion": "303"},
    "202 with status completed": {"completion": "beta202"},
    "200 with the item": {"completion": "item200"},
    "failed (202, status failed)": {"outcome": "failed"},
}
_FAILED = {"failed", "cancelled", "deleteFailed"}


@dataclass
class PollerRun:
    """One poller over a set of copies: requests per copy, detection lags (s, scaled time), what it concluded."""

    requests: list[int] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)

    def per_job(self) -> float:
        return sum(self.requests) / len(self.requests) if self.requests else 0.0


def _read(status: int, body: bytes) -> str | None:
    """What a fixed poller makes of one answer: 'completed', 'failed', or None (poll again)."""
    if status == 303:
        return "completed"
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    state = doc.get("status")
    if state == "completed" or (status == 200 and state is None and "id" in doc):
        return "completed"
    return "failed" if state in _FAILED else None


async def fixed(http: aiohttp.ClientSession, url: str, interval: float, deadline: float) -> str:
    """Poll ``url`` every ``interval`` s until it ends or ``deadline`` (monotonic) passes."""
    while time.monotonic() < deadline:
        try:
            async with http.get(url, allow_redirects=False) as resp:
                verdict = _read(resp.status, await resp.read())
        except aiohttp.ClientError:
            verdict = None
        if verdict:
            return verdict
        await asyncio.sleep(interval)
    return "still polling at the cap"


async def azure_core(
    http: aiohttp.ClientSession, sim: str, knobs: dict[str, Any], interval: float, deadline: float
) -> tuple[str, str | None, float]:
    """Start a copy (its real 202) and wait with azure-core's AsyncLROPoller; (verdict, monitor URL, started)."""
    from azure.core import AsyncPipelineClient
    from azure.core.configuration import Configuration
    from azure.core.exceptions import AzureError
    from azure.core.pipeline.policies import AsyncRedirectPolicy, AsyncRetryPolicy
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.core.polling import AsyncLROPoller
    from azure.core.polling.async_base_polling import AsyncLROBasePolling
    from azure.core.rest import HttpRequest

    config: Configuration[Any, Any] = Configuration()
    config.redirect_policy = AsyncRedirectPolicy()
    config.retry_policy = AsyncRetryPolicy()
    # no credential policy: Graph's monitor URLs refuse a request that carries one (so does the simulator's),
    # and a policy would put it on every request of the pipeline, the polls included; the copy's POST has it
    transport = AioHttpTransport(session=http, session_owner=False)
    query = "&".join(f"{k}={v}" for k, v in knobs.items())
    url = f"{sim}/v1.0/me/drive/items/01SOURCE/copy?{query}"
    async with AsyncPipelineClient(base_url=sim, config=config, transport=transport) as client:
        request = HttpRequest(
            "POST", url, json={"name": "copy"}, headers={"Authorization": f"Bearer {peers.SIM_TOKEN}"}
        )
        started = time.time()
        initial = await client._pipeline.run(request)  # the PipelineResponse a poller is made from
        monitor = initial.http_response.headers.get("Location")
        poller = AsyncLROPoller(client, initial, lambda r: r, AsyncLROBasePolling(timeout=interval))
        try:
            await asyncio.wait_for(poller.result(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return "still polling at the cap", monitor, started
        except AzureError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            return f"error: {type(exc).__name__}{f' (HTTP {status})' if status else ''}", monitor, started
        return "succeeded", monitor, started


async def run_pollers(
    http: aiohttp.ClientSession, sim: str, knobs: list[dict[str, Any]], scale: float, cap: float
) -> dict[str, PollerRun]:
    """Every poller over copies of ``knobs`` at once; requests and detection lags from the simulator's record."""
    deadline = time.monotonic() + cap
    fixed_ops = {
        name: await peers.sim_create(http, sim, knobs, record=True) for name in POLLERS if name.startswith("fixed")
    }
    tasks: dict[str, list[asyncio.Task[Any]]] = {}
    for name, ops in fixed_ops.items():
        tasks[name] = [
            asyncio.create_task(fixed(http, op["monitorUrl"], POLLERS[name] / scale, deadline)) for op in ops
        ]
    azure = "azure-core AsyncLROPoller"
    # its copies end in the one form azure-core's poller completes (a 200 with the item: see forms())
    tasks[azure] = [
        asyncio.create_task(azure_core(http, sim, {**k, "completion": "item200"}, POLLERS[azure] / scale, deadline))
        for k in knobs
    ]
    results = {name: await asyncio.gather(*ts) for name, ts in tasks.items()}
    runs: dict[str, PollerRun] = {}
    for name, verdicts in results.items():
        if name in fixed_ops:
            pairs = [(op["id"], op["created"]) for op in fixed_ops[name]]
        else:
            pairs = [(str(url).rsplit("/", 1)[-1].upper(), started) for _, url, started in verdicts]
            verdicts = [v for v, _, _ in verdicts]
        record = (await peers.sim_polls(http, sim, [op_id for op_id, _ in pairs]))["ops"]
        run = runs[name] = PollerRun()
        for (op_id, created), verdict, k in zip(pairs, verdicts, knobs, strict=True):
            run.verdicts[verdict] = run.verdicts.get(verdict, 0) + 1
            info = record.get(op_id)
            if info is None:
                continue
            run.requests.append(int(info["polls"]))
            end = created + k["duration"]
            after = [t for t in info["times"] if t >= end]
            if after and verdict in ("completed", "succeeded"):
                run.lags.append(min(after) - end)
    return runs


async def forms(http: aiohttp.ClientSession, sim: str, scale: float) -> dict[str, dict[str, str]]:
    """What each poller concludes for each monitor form: {poller: {form: verdict}} (one 1 s copy, scaled)."""
    duration = 1.0
    cap = duration + 2.5 * POLLERS["azure-core AsyncLROPoller"] / scale
    out: dict[str, dict[str, str]] = {name: {} for name in POLLERS}

    async def one(name: str, form: str, knobs: dict[str, Any]) -> None:
        deadline = time.monotonic() + cap
        if name.startswith("fixed"):
            (op,) = await peers.sim_create(http, sim, [{"duration": duration, **knobs}])
            out[name][form] = await fixed(http, op["monitorUrl"], POLLERS[name] / scale, deadline)
        else:
            verdict, _, _ = await azure_core(
                http, sim, {"duration": duration, **knobs}, POLLERS[name] / scale, deadline
            )
            out[name][form] = verdict

    await asyncio.gather(*(one(name, form, knobs) for name in POLLERS for form, knobs in FORMS.items()))
    return out


def lag_text(lags: list[float], scale: float) -> str:
    """Median and p99 detection lag in real time (scaled lags x ``scale``)."""
    if not lags:
        return "no completion seen"
    return f"median {scale * pct(lags, 0.5):.2f} s, p99 {scale * pct(lags, 0.99):.2f} s"


def median_or_inf(lags: list[float]) -> float:
    return pct(lags, 0.5) if lags else math.inf
