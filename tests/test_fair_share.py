"""Fair share between tenants (API tokens): limits on active jobs, registrations a second and open streams."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.simulator import Simulator
from tests.helpers import Api, eventually, running_api, two_tenants

A = {"Authorization": "Bearer token-a"}
B = {"Authorization": "Bearer token-b"}


def body(n: int) -> dict[str, Any]:
    return {"monitorUrl": f"http://127.0.0.1:1029/monitor/{n}", "callbackUrl": "http://127.0.0.1:1029/h"}


def shared(settings: Settings, **limits: int) -> Settings:
    return two_tenants(settings, **limits)


async def test_a_tenant_over_its_active_jobs_gets_429_and_others_do_not(settings: Settings, redis: Redis) -> None:
    async with running_api(shared(settings, tenant_max_active_jobs=2)) as api:
        jobs = [(await api.request("POST", "/v1/jobs", json=body(n), headers=A))[1] for n in range(2)]
        status, problem, resp = await api.request("POST", "/v1/jobs", json=body(3), headers=A)
        assert status == 429 and resp.headers["Retry-After"] == "60" and "MAX_ACTIVE" in problem["detail"]
        status, _, _ = await api.request("POST", "/v1/jobs", json=body(4), headers=B)
        assert status == 201, "another tenant is not held back"
        status, _, _ = await api.request("DELETE", f"/v1/jobs/{jobs[0]['id']}", headers=A)
        assert status == 204
        status, _, _ = await api.request("POST", "/v1/jobs", json=body(5), headers=A)
        assert status == 201, "an ended job frees its place"


async def test_registrations_beyond_the_rate_get_429_with_retry_after(settings: Settings, redis: Redis) -> None:
    async with running_api(shared(settings, tenant_registrations_per_second=3)) as api:
        answers = [await api.request("POST", "/v1/jobs", json=body(n), headers=A) for n in range(10)]
    statuses = [status for status, _, _ in answers]
    assert 429 in statuses and statuses.count(201) <= 6, statuses  # at most two one-second windows' worth
    refused = next(resp for status, _, resp in answers if status == 429)
    assert refused.headers["Retry-After"] == "1"


async def test_a_tenant_with_all_its_streams_open_gets_429(settings: Settings, redis: Redis) -> None:
    async with running_api(shared(settings, tenant_max_streams=1)) as api:
        async with api.session.get(api.base + "/v1/stream", headers=A) as first:
            assert first.status == 200
            await first.content.readline()
            status, problem, resp = await api.request("GET", "/v1/stream", headers=A)
            assert status == 429 and resp.headers["Retry-After"] == "5", problem
            async with api.session.get(api.base + "/v1/stream", headers=B) as other:
                assert other.status == 200

        async def place_given_back() -> bool:  # the server sees a client gone at its next look (sse.POLL_INTERVAL)
            async with api.session.get(api.base + "/v1/stream", headers=A) as again:
                return again.status == 200

        await eventually(place_given_back, timeout=5, interval=0.2)


async def test_without_api_tokens_there_is_no_one_to_share_with(api: Api) -> None:
    for n in range(3):
        status, _, _ = await api.request("POST", "/v1/jobs", json=body(n))
        assert status == 201


async def test_an_action_over_the_limit_is_refused_before_graph_is_asked(
    settings: Settings, redis: Redis, simulator: Simulator
) -> None:
    custom = shared(settings, tenant_max_active_jobs=1, action_allowed_hosts=("127.0.0.1",))
    action = {
        "action": {"url": f"{simulator.base_url}/v1.0/me/drive/items/01A/copy?duration=60", "body": {"name": "x"}},
        "authorization": "Bearer sim-token",
        "callbackUrl": "http://127.0.0.1:1029/h",
    }
    async with running_api(custom) as api:
        status, _, _ = await api.request("POST", "/v1/jobs", json=action, headers=A)
        assert status == 201
        status, _, _ = await api.request("POST", "/v1/jobs", json=action, headers=A)
        assert status == 429
    assert simulator.actions == 1, "a refused registration started a copy"
