"""/metrics on the API (Redis gauges + in-process counters) and on a ``relay worker`` process."""

from __future__ import annotations

import select
import socket
from typing import Any

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from relay import metrics
from relay.config.settings import Settings
from relay.core.crypto import Vault
from relay.store import keys
from tests.helpers import (
    ENCRYPTION_KEY,
    SECRET,
    Api,
    Receiver,
    ensure_stopped,
    eventually,
    free_port,
    relay_env,
    start_relay,
    wait_http,
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_api_metrics_report_jobs_polls_deliveries_and_lag(
    api: Api, simulator: Any, receiver: Receiver, worker: Any
) -> None:
    ok = await api.create(monitorUrl=simulator.create(duration=0.2).monitor_url, callbackUrl=receiver.url)
    bad = await api.create(
        monitorUrl=simulator.create(duration=0.2, outcome="failed").monitor_url, callbackUrl=receiver.url
    )
    cancelled = await api.create(monitorUrl=simulator.create(duration=60).monitor_url, callbackUrl=receiver.url)
    await api.request("DELETE", f"/v1/jobs/{cancelled['id']}")
    await receiver.wait_for(
        lambda: receiver.terminal(ok["id"]) is not None and receiver.terminal(bad["id"]) is not None
    )
    got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    async def acked() -> bool:  # the webhooks came; the worker counts a delivery once its ack lands
        async with api.session.get(api.base + "/metrics") as resp:
            assert resp.status == 200
            got.update(samples(await resp.text()))
        return (
            got.get(("relay_event_lag_seconds_count", ()), 0) >= 2 and got[("relay_jobs", (("state", "active"),))] == 0
        )

    await eventually(acked)
    assert got[("relay_jobs", (("state", "registered"),))] == 3
    assert got[("relay_jobs", (("state", "completed"),))] == 1
    assert got[("relay_jobs", (("state", "failed"),))] == 1
    assert got[("relay_jobs", (("state", "cancelled"),))] == 1
    assert got[("relay_jobs", (("state", "active"),))] == 0
    assert got[("relay_dead_letters", ())] == 0
    assert got[("relay_event_lag_seconds_count", ())] >= 2
    assert any(name == "relay_polls_total" for name, _ in got)
    assert any(name == "relay_deliveries_total" and ("outcome", "delivered") in labels for name, labels in got)


async def test_each_delivery_attempt_is_counted_by_its_outcome_and_status_class(
    api: Api, simulator: Any, receiver: Receiver, worker: Any
) -> None:
    async def counts() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with api.session.get(api.base + "/metrics") as resp:
            return samples(await resp.text())

    def attempts(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], outcome: str, status: str) -> float:
        return got.get(("relay_deliveries_total", (("outcome", outcome), ("status", status))), 0.0)

    before = await counts()
    receiver.responder = lambda request, n: web.Response(status=503 if n == 1 else 204)
    op = simulator.create(script=[{"status": 202, "body": {"status": "completed", "resourceId": "01ABC"}}])
    await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    await receiver.wait_for(lambda: len(receiver.received) >= 2)
    got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    async def both_counted() -> bool:  # counted once each ack lands
        got.update(await counts())
        return attempts(got, "delivered", "2xx") > attempts(before, "delivered", "2xx")

    await eventually(both_counted)
    assert attempts(got, "failed", "5xx") - attempts(before, "failed", "5xx") == 1
    assert attempts(got, "delivered", "2xx") - attempts(before, "delivered", "2xx") == 1
    lag = ("relay_event_lag_seconds_count", ())
    assert got[lag] - before.get(lag, 0.0) == 1  # the lag of the delivered attempt alone
    duration = ("relay_delivery_duration_seconds_count", ())
    assert got[duration] - before.get(duration, 0.0) == 2


def test_worker_serves_its_own_metrics(settings: Settings) -> None:
    port = free_port()
    assert settings.redis_url is not None
    env = relay_env(
        REDIS_URL=settings.redis_url,
        RELAY_SIGNING_SECRETS=SECRET,
        RELAY_ENCRYPTION_KEY=ENCRYPTION_KEY,
        RELAY_WORKER_METRICS_PORT=str(port),
        RELAY_API_READ_TIMEOUT="0.5",
    )
    proc = start_relay("worker", env)
    try:
        text = wait_http(f"http://127.0.0.1:{port}/metrics", proc).decode()
        assert "relay_polls_total" in text and "relay_deliveries_total" in text
        # and its liveness: /healthz answers from the heartbeat of its arq loop (tests/test_deploy.py runs the probe)
        assert wait_http(f"http://127.0.0.1:{port}/healthz", proc) == b"ok\n"
        # a client that sends nothing, half a request, or a trickle is answered 408 and closed within
        # RELAY_API_READ_TIMEOUT, as the API's are (before: held open for ever)
        for sent in (b"", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"):
            assert _answer_to(port, sent).startswith(b"HTTP/1.0 408 ")
        assert _answer_to(port, b"GET /metrics HTTP/1.1\r\nHost: abc", trickle=True).startswith(b"HTTP/1.0 408 ")
        assert b"relay_polls_total" in _answer_to(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        proc.terminate()
        proc.wait(20)
        ensure_stopped(proc)


def _answer_to(port: int, sent: bytes, *, trickle: bool = False) -> bytes:
    """What the server answers on a raw socket to ``sent`` before it closes the connection (fails if it holds it 5
    s). With ``trickle``, a byte every 0.2 s, the server's answer coming before the last one (4 s for 20 bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if trickle:
            for byte in sent:
                if select.select([sock], [], [], 0.2)[0]:
                    break  # the server answered (and closed) while the head was still arriving
                sock.sendall(bytes([byte]))
            else:
                raise AssertionError("the server waited for a trickled head to the end")
        else:
            sock.sendall(sent)
        answer = b""
        while chunk := sock.recv(65536):  # socket.timeout (5 s) fails the test: the connection was held
            answer += chunk
        return answer


def _polls(outcome: str) -> float:
    """This process's count of polls with ``outcome`` (the worker fixture runs here)."""
    return float(metrics.POLLS.labels(outcome=outcome)._value.get())


async def test_each_poll_is_counted_once_by_its_outcome(
    api: Api, worker: Any, receiver: Receiver, redis: Redis, settings: Settings
) -> None:
    asked: list[str] = []

    async def monitor(request: web.Request) -> web.Response:
        asked.append(request.match_info["n"])
        return web.json_response({"status": "inProgress", "percentageComplete": 5}, status=202)

    app = web.Application()
    app.router.add_get("/monitor/{n}", monitor)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        progress, invalid = _polls("progress"), _polls("invalid")
        job = await api.create(monitorUrl=f"{base}/monitor/1", callbackUrl=receiver.url)
        await receiver.wait_for(lambda: bool(receiver.events(job["id"])), timeout=10)
        await api.request("DELETE", f"/v1/jobs/{job['id']}")  # no more polls: the count settles

        async def settled() -> bool:
            return _polls("progress") - progress == len(asked) > 0

        await eventually(settled)
        # a monitor URL sealed with a key no longer configured: answered invalid without a request, counted so
        other = await api.create(monitorUrl=f"{base}/monitor/2", callbackUrl=receiver.url)
        job_fields = await redis.hgetall(keys.job(other["id"]))  # type: ignore[misc]
        sealed = Vault(("a key this relay does not hold",)).seal(f"{base}/monitor/2")
        await redis.hset(keys.monitor(job_fields["mk"]), "url", sealed)  # type: ignore[misc]  # mk: monitor_key
        await receiver.wait_for(lambda: receiver.terminal(other["id"]) is not None, timeout=10)
        assert receiver.terminal(other["id"])["data"]["error"]["code"] == "invalidMonitorResponse"  # type: ignore[index]
        assert _polls("invalid") - invalid >= settings.max_invalid_responses
        assert _polls("progress") - progress == len(asked)  # each request answered: one progress poll each
    finally:
        await runner.cleanup()
