"""Tenants cannot reach each other through signatures: each signs with its own secrets, a job's own secret
replaces its tenant's, and a stream frame carries the event's first signing time, not a fresh one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from relay.config.settings import ConfigError, Settings
from relay.core.events import build_event
from relay.core.signing import signature_headers
from relay.simulator import Simulator
from relay.store import keys
from tests.helpers import (
    BETA_SECRET,
    SECRET,
    Receiver,
    auth,
    read_sse,
    running_api,
    running_worker,
    two_tenants,
    with_settings,
)

JOB_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
OTHER_SECRET = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
A, B = auth("token-a"), auth("token-b")


def verifies(secret: str, body: bytes | str, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


def signed(messages: list[tuple[bytes, dict[str, str]]], secret: str) -> bool:
    return any(verifies(secret, body, headers) for body, headers in messages)


async def test_nothing_one_tenant_holds_verifies_for_another_tenants_receiver(
    settings: Settings, redis: Redis, simulator: Simulator
) -> None:
    """Alpha's receiver holds whatever verifies alpha's events; with all of it (and every signed message alpha
    can read) alpha cannot make beta's receiver accept an event, nor reach it with a job of its own."""
    alpha_hook, beta_hook = Receiver(secrets=()), Receiver(secrets=())  # they record; verification is below
    await alpha_hook.start()
    await beta_hook.start()
    custom = two_tenants(settings)
    try:
        async with running_api(custom) as api, running_worker(custom):

            async def create(headers: dict[str, str], hook: Receiver, **extra: Any) -> str:
                op = simulator.create(duration=0.2)
                body = {"monitorUrl": op.monitor_url, "callbackUrl": hook.url, **extra}
                status, job, _ = await api.request("POST", "/v1/jobs", json=body, headers=headers)
                assert status == 201, job
                return str(job["id"])

            alpha_job = await create(A, alpha_hook)
            alpha_own = await create(A, alpha_hook, secret=JOB_SECRET)
            beta_job = await create(B, beta_hook)
            aimed = await create(A, beta_hook)  # alpha points a job of its own at beta's receiver
            await alpha_hook.wait_for(lambda: all(alpha_hook.terminal(j) for j in (alpha_job, alpha_own)))
            await beta_hook.wait_for(lambda: all(beta_hook.terminal(j) for j in (beta_job, aimed)))
            frames = []
            for job_id in (alpha_job, alpha_own):  # what alpha reads on its streams, signed too
                async with api.session.get(f"{api.base}/v1/jobs/{job_id}/events", headers=A) as resp:
                    for message in await asyncio.wait_for(read_sse(resp), 10):
                        names = ("webhook-id", "webhook-timestamp", "webhook-signature")
                        frames.append((message["data"].encode(), {k: message[k] for k in names}))
    finally:
        await alpha_hook.stop()
        await beta_hook.stop()

    def received(hook: Receiver, *job_ids: str) -> list[tuple[bytes, dict[str, str]]]:
        return [(r.body, r.headers) for r in hook.received if r.event["data"]["jobId"] in job_ids]

    alpha_obtains = received(alpha_hook, alpha_job, alpha_own) + frames
    candidates = (SECRET, BETA_SECRET, JOB_SECRET, *custom.signing_secrets)
    alpha_holds = {s for s in candidates if signed(alpha_obtains, s)}  # what alpha's receiver is given
    beta_trusts = {s for s in candidates if signed(received(beta_hook, beta_job), s)}
    assert alpha_holds and beta_trusts
    assert not alpha_holds & beta_trusts, "a secret alpha holds verifies beta's events"

    forged = build_event(
        "job.completed",
        job_id=beta_job,
        sequence=9,
        operation="ItemCopy",
        status="completed",
        percentage=100.0,
        metadata=None,
        timestamp=0,
        resourceId="01EVIL",
        driveItem={"id": "01EVIL", "name": "payroll.xlsx"},
    )
    for secret in alpha_holds:
        headers = signature_headers("msg_forged", forged, [secret])
        assert not any(verifies(trusted, forged, headers) for trusted in beta_trusts), "a forged event verified"
    for body, headers in alpha_obtains + received(beta_hook, aimed):  # replayed or aimed at beta: refused
        assert not any(verifies(trusted, body, headers) for trusted in beta_trusts)


async def test_a_jobs_own_secret_replaces_its_tenants(
    settings: Settings, redis: Redis, simulator: Simulator, receiver: Receiver
) -> None:
    async with running_api(settings) as api, running_worker(settings):
        op = simulator.create(duration=0.2)
        job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url, secret=JOB_SECRET)
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
        async with api.session.get(f"{api.base}/v1/jobs/{job['id']}/events") as resp:
            frames = await asyncio.wait_for(read_sse(resp), 10)
    messages = [(r.body, r.headers) for r in receiver.received]
    messages += [(f["data"].encode(), {k: v for k, v in f.items() if k.startswith("webhook-")}) for f in frames]
    assert len(messages) >= 2
    for body, headers in messages:
        assert len(headers["webhook-signature"].split(" ")) == 1
        assert verifies(JOB_SECRET, body, headers)
        assert not verifies(SECRET, body, headers), "the relay-wide secret still verifies a job with its own"


async def test_a_stream_frame_carries_the_events_first_signing_time(
    settings: Settings, redis: Redis, simulator: Simulator, receiver: Receiver
) -> None:
    """Reading an old event again gives the same frame: no fresh timestamp for a replay to ride on."""
    async with running_api(settings) as api:
        async with running_worker(settings):
            job = await api.create(monitorUrl=simulator.create(duration=0.2).monitor_url, callbackUrl=receiver.url)
            await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)

        async def frames() -> list[dict[str, str]]:
            async with api.session.get(f"{api.base}/v1/jobs/{job['id']}/events") as resp:
                return await asyncio.wait_for(read_sse(resp), 10)

        first = await frames()
        await asyncio.sleep(1.1)  # a timestamp taken at reading would now differ
        again = await frames()
    assert first == again
    for frame in first:
        created = int(await redis.hget(keys.event(frame["id"]), "created") or 0)
        assert created and int(frame["webhook-timestamp"]) == created // 1000
        assert verifies(SECRET, frame["data"], {k: v for k, v in frame.items() if k.startswith("webhook-")})
    delivered = {r.headers["webhook-id"]: r for r in receiver.received}
    assert all(json.loads(frame["data"]) == delivered[frame["id"]].event for frame in first)


def test_several_tenants_without_their_own_secrets_refuse_to_start() -> None:
    tokens = {"RELAY_API_TOKENS": "alpha:t0k3n-a,beta:t0k3n-b", "RELAY_SIGNING_SECRETS": SECRET}
    with pytest.raises(ConfigError, match=r"RELAY_TENANT_SIGNING_SECRETS.*beta") as info:
        Settings.from_env({**tokens, "RELAY_TENANT_SIGNING_SECRETS": f"alpha:{SECRET}"})
    assert "\n" not in str(info.value) and SECRET not in str(info.value)
    with pytest.raises(ConfigError, match="RELAY_TENANT_SIGNING_SECRETS"):
        Settings.from_env(tokens)
    with pytest.raises(ConfigError, match=r"RELAY_API_TOKENS.*name"):  # an unnamed token is a tenant of its own
        Settings.from_env({**tokens, "RELAY_API_TOKENS": "alpha:t0k3n-a,t0k3n-b"})
    with pytest.raises(ConfigError, match=r"RELAY_TENANT_SIGNING_SECRETS.*gamma"):  # a name no token has
        Settings.from_env({"RELAY_API_TOKENS": "alpha:t", "RELAY_TENANT_SIGNING_SECRETS": f"gamma:{SECRET}"})
    with pytest.raises(ConfigError, match="RELAY_TENANT_SIGNING_SECRETS") as bad:
        Settings.from_env({"RELAY_API_TOKENS": "alpha:t", "RELAY_TENANT_SIGNING_SECRETS": "alpha:whsec_!!!"})
    assert "!!!" not in str(bad.value)

    made = Settings.from_env(
        {**tokens, "RELAY_TENANT_SIGNING_SECRETS": f"alpha:{OTHER_SECRET}, beta:{BETA_SECRET}, alpha:{SECRET}"}
    )
    assert made.tenant_signing_secrets == (("alpha", OTHER_SECRET), ("beta", BETA_SECRET), ("alpha", SECRET))
    assert made.warnings == ()
    # one tenant (or none) may sign with RELAY_SIGNING_SECRETS, as before
    for single in ("t0k3n", "alpha:t0k3n", "alpha:t0k3n-a,alpha:t0k3n-b", ""):
        Settings.from_env({"RELAY_API_TOKENS": single, "RELAY_SIGNING_SECRETS": SECRET}).check_signing()
    with pytest.raises(ConfigError, match="RELAY_SIGNING_SECRETS"):
        Settings.from_env({"RELAY_API_TOKENS": "t0k3n"}).check_signing()


def test_a_secret_two_tenants_share_is_warned_of_without_showing_it() -> None:
    """While receivers move off a shared secret (see docs), both tenants may list it; each could forge the
    other's events meanwhile, and the log says so at start."""
    env = {
        "RELAY_API_TOKENS": "alpha:t0k3n-a,beta:t0k3n-b",
        "RELAY_TENANT_SIGNING_SECRETS": f"alpha:{OTHER_SECRET},alpha:{SECRET},beta:{BETA_SECRET},beta:{SECRET}",
    }
    (line,) = Settings.from_env(env).warnings
    assert "alpha" in line and "beta" in line and SECRET not in line


async def test_an_owner_no_token_names_is_not_signed_with_anothers_secret(
    settings: Settings, redis: Redis, simulator: Simulator
) -> None:
    """A job whose token was removed, on a relay whose tenants all have their own secrets and no relay-wide one:
    nothing is sent unsigned, and the attempt says why."""
    hook = Receiver(secrets=())
    await hook.start()
    try:
        before = two_tenants(settings)
        async with running_api(before) as api:
            op = simulator.create(duration=0.1)
            body = {"monitorUrl": op.monitor_url, "callbackUrl": hook.url}
            status, job, _ = await api.request("POST", "/v1/jobs", json=body, headers=B)
            assert status == 201
        after = two_tenants(
            settings, tokens="alpha:token-a,gamma:token-c", secrets=f"alpha:{SECRET},gamma:{OTHER_SECRET}"
        )
        after = with_settings(after, signing_secrets=(), delivery_schedule=(0,))
        async with running_api(after) as api, running_worker(after):
            status, _, _ = await api.request("GET", f"/v1/jobs/{job['id']}", headers=B)
            assert status == 401

            async def attempted() -> list[Any]:
                return [json.loads(r) for r in await redis.lrange(keys.job_attempts(job["id"]), 0, -1)]

            for _ in range(200):
                if await attempted():
                    break
                await asyncio.sleep(0.05)
        # the job may have recorded more than one event (progress, then its end) before the worker stopped:
        # every attempt is refused the same way
        attempts = await attempted()
        assert attempts
        assert all(a["outcome"] == "dead" and "signing secret" in a["error"] for a in attempts), attempts
        assert hook.received == []
    finally:
        await hook.stop()
