"""/metrics on the API (Redis gauges + in-process counters) and on a ``relay worker`` process."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from relay.config.settings import Settings
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


def test_worker_serves_its_own_metrics(settings: Settings) -> None:
    port = free_port()
    assert settings.redis_url is not None
    env = relay_env(
        REDIS_URL=settings.redis_url,
        RELAY_SIGNING_SECRETS=SECRET,
        RELAY_ENCRYPTION_KEY=ENCRYPTION_KEY,
        RELAY_WORKER_METRICS_PORT=str(port),
    )
    proc = start_relay("worker", env)
    try:
        text = wait_http(f"http://127.0.0.1:{port}/metrics", proc).decode()
        assert "relay_polls_total" in text and "relay_deliveries_total" in text
        # and its liveness: /healthz answers from the heartbeat of its arq loop (tests/test_deploy.py runs the probe)
        assert wait_http(f"http://127.0.0.1:{port}/healthz", proc) == b"ok\n"
    finally:
        proc.terminate()
        proc.wait(20)
        ensure_stopped(proc)


def test_the_light_collectors_expose_what_prometheus_clients_would() -> None:
    """relay's own histogram and labelled counter (the hot paths' metrics) against prometheus-client's own
    Histogram and Counter fed the same values: the same samples in the exposition, bucket by bucket."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from relay.metrics import LightHistogram, Tally
    from workers.lifecycle import _total

    theirs, mine = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("t_light_seconds", "h", registry=theirs, buckets=(0.1, 1, 5))
    counter = Counter("t_light_total", "c", ["outcome", "status"], registry=theirs)
    ours = LightHistogram("t_light_seconds", "h", buckets=(0.1, 1, 5), registry=mine)
    tally = Tally("t_light_total", "c", ["outcome", "status"], registry=mine)
    for amount in (0.0, 0.1, 0.10001, 1, 4.9, 5, 5.1, 1e9):  # on, above and beyond each bound
        reference.observe(amount)
        ours.observe(amount)
    for outcome, status in (("delivered", "2xx"), ("delivered", "2xx"), ("failed", "5xx")):
        counter.labels(outcome, status).inc()
        tally.inc(outcome, status)
    tally.labels(outcome="gone", status="4xx").inc()
    counter.labels(outcome="gone", status="4xx").inc()

    def exposed(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = generate_latest(registry).decode()
        return {key: value for key, value in samples(text).items() if not key[0].endswith("_created")}

    assert (
        exposed(mine) == exposed(theirs) and len(exposed(mine)) == 4 + 2 + 3
    )  # buckets, count and sum; three label sets
    assert _total(tally) == 4 and _total(tally, outcome="delivered") == 2
