"""Section 3: ``POST /v1/jobs`` on one ``relay serve`` vs an aiohttp hello world, driven by the same load generator.

The load generator prints marks as its measured window opens and closes; CPU times are sampled on
them, so the registrations it counts and the CPU the processes spent cover the same seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from tests.bench.costs import floor_rows, interleave, median, throughput_rows
from tests.bench.harness import SECRET, Harness, Run
from tests.bench.measure import Meter, Sample
from tests.bench.parts import registration_parts
from tests.bench.profile import profile

__all__ = ["BODY", "run"]

CONCURRENCY, WARM, WINDOW = 64, 2.0, 8.0
BODY = json.dumps(
    {
        "monitorUrl": "http://127.0.0.1:1029/monitor/4A3407B5-88FC-4504-8B21-{n}",
        "callbackUrl": "http://127.0.0.1:1029/hooks/relay",
        "driveItemUrl": "http://127.0.0.1:1029/v1.0/me/drive/items/{resourceId}",
        "authorization": "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.sim",
        "metadata": {"requestId": "r-{n}"},
    }
)


async def drive(h: Harness, url: str, server: str, server_pid: int) -> tuple[Run, dict[str, Any]]:
    """Run the load generator against ``url``; its result and the window's CPU of server, client and Redis."""
    samples: list[Sample] = []
    meter: Meter | None = None

    def on_mark(_: str) -> None:
        if meter is not None:
            samples.append(meter.sample())

    args = ["--body", BODY, "--concurrency", str(CONCURRENCY), "--warmup", str(WARM), "--duration", str(WINDOW)]
    loadgen = await h.start_helper("loadgen", "--url", url, *args, on_mark=on_mark)
    meter = h.meter(**{server: server_pid, "client": loadgen.pid})
    result = await loadgen.result()
    if len(samples) != 2:
        raise RuntimeError("the load generator did not mark its window")
    return Run(result["ok_in_window"], Meter.between(*samples)), result


async def run(h: Harness) -> None:
    hello_proc, hello = h.spawn_server("hello")
    api = floor_proc = None
    try:
        await h.fresh_redis()
        api, base = await h.start_api(h.relay_env())

        async def baseline() -> tuple[Run, dict[str, Any]]:
            run, result = await drive(h, f"{hello}/v1/jobs", "hello", hello_proc.pid)
            h.say(f"hello world: {run.rate:,.0f}/s, p99 {result['p99_ms']} ms; {run.window.text()}")
            return run, result

        bare = [await baseline()]
        floor_proc, floor = h.spawn_server("floor", "--redis-url", h.redis_server.url)
        relay_results: list[dict[str, Any]] = []
        floor_results: list[dict[str, Any]] = []

        async def relay_window() -> Run:
            await h.fresh_redis()
            run, result = await drive(h, f"{base}/v1/jobs", "api", api.pid)
            h.say(f"relay serve: {run.rate:,.0f}/s, p99 {result['p99_ms']} ms; {run.window.text()}")
            relay_results.append(result)
            return run

        async def floor_window() -> Run:
            await h.fresh_redis()
            run, result = await drive(h, f"{floor}/v1/jobs", "floor", floor_proc.pid)
            h.say(f"floor (hello world + one batched Redis write): {run.rate:,.0f}/s; {run.window.text()}")
            floor_results.append(result)
            return run

        relay, lowest = await interleave(h, relay_window, floor_window)
        if h.args.profile:
            common = ["--body", BODY, "--concurrency", str(CONCURRENCY), "--warmup", "0", "--duration", "11"]
            load = asyncio.create_task(h.helper("loadgen", "--url", f"{base}/v1/jobs", *common))
            await asyncio.sleep(0.5)
            await profile(h, api.pid, 10, "section 3: relay serve registering", median([r.us("api") for r in relay]))
            await load
        bare.append(await baseline())
        relay_result = {
            "statuses": dict(sum((Counter(r["statuses"]) for r in relay_results), Counter())),
            "errors": sum(r["errors"] for r in relay_results),
            "p99_ms": max(r["p99_ms"] for r in relay_results),
        }
        floor_result = {
            "statuses": dict(sum((Counter(r["statuses"]) for r in floor_results), Counter())),
            "errors": sum(r["errors"] for r in floor_results),
        }
        statuses = relay_result["statuses"]
        bad = sum(v for k, v in statuses.items() if k != "201") + relay_result["errors"]
        if bad:
            h.note(f"registration: {bad} answers were not 201: {statuses}")
        throughput_rows(
            h,
            key="registration",
            figure=f"3 POST /v1/jobs, relay serve vs aiohttp hello world ({CONCURRENCY} connections)",
            unit="registration",
            relay=relay,
            relay_proc="api",
            bare=[b for b, _ in bare],
            bare_proc="hello",
            peers=("client",),
            ok=bad == 0,
            extra=(f" (p99 {relay_result['p99_ms']} ms)", f" (p99 {max(r['p99_ms'] for _, r in bare)} ms)"),
        )
        answered = floor_result["errors"] == 0 and set(floor_result["statuses"]) == {"201"}
        floor_rows(
            h, number="3", unit="registration", floor_is="hello world + one batched Redis write per POST",
            bare_is="hello world", relay=relay, relay_proc="api", floor=lowest, bare=[b for b, _ in bare],
            trouble="" if answered else f" (answers {floor_result['statuses']}, {floor_result['errors']} errors)",
            parts=registration_parts(BODY, SECRET),
        )  # fmt: skip
    finally:
        h.stop(api, hello_proc, floor_proc)
