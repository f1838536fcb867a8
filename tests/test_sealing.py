"""Secrets at rest: the sealing key is configured (never derived from a signing secret), per-job secrets are
sealed, what earlier versions sealed with the signing secret stays readable with it listed as an old key, and a
Redis dump plus everything a receiver holds reveals no Graph token. ``relay dev`` keeps its key and secret."""

from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from relay.api.app import create_app
from relay.cli.devstate import dev_state, dev_state_path, load_dev_state
from relay.config.settings import ConfigError, Settings
from relay.core.crypto import InvalidToken, Vault
from relay.core.schema import Job
from relay.simulator import Simulator
from relay.store.open import open_store
from tests.helpers import (
    BETA_SECRET,
    SECRET,
    Receiver,
    auth,
    running_api,
    running_worker,
    two_tenants,
    with_settings,
)
from workers.main import create_worker

JOB_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
#: sealed by relay at 60a5f05 (relay/core/crypto.py, no RELAY_ENCRYPTION_KEY: the key derived from SECRET)
SEALED_AT_60A5F05 = (
    "g1.vQqu4UIESscpREN7Fqh-MQY6lctJL2ULdfDpb8H5uB0aQbRNHBhxqjfS1Vj8xjvsUreQsNO8afaYl2Pl2YQnmQ==",
    "Bearer graph-token-sealed-at-60a5f05",
)


def test_serving_and_working_without_a_sealing_key_refuse_to_start(settings: Settings) -> None:
    keyless = with_settings(settings, encryption_keys=())
    for start in (lambda: create_app(keyless), lambda: create_worker(keyless), keyless.check_serving):
        with pytest.raises(ConfigError, match=r"^RELAY_ENCRYPTION_KEY") as info:
            start()
        assert "\n" not in str(info.value)


def test_a_signing_secret_cannot_be_the_sealing_key() -> None:
    with pytest.raises(ConfigError, match="RELAY_ENCRYPTION_KEY") as info:
        Settings.from_env({"RELAY_ENCRYPTION_KEY": f"{SECRET},other", "RELAY_SIGNING_SECRETS": SECRET})
    assert SECRET not in str(info.value)
    # after a new key it only opens what it sealed before (see the next test)
    rotated = Settings.from_env({"RELAY_ENCRYPTION_KEY": f"new-key,{SECRET}", "RELAY_SIGNING_SECRETS": SECRET})
    assert rotated.vault_keys == ("new-key", SECRET)
    assert Settings.from_env({"RELAY_SIGNING_SECRETS": SECRET}).vault_keys == ()


async def test_what_the_signing_secret_sealed_before_stays_readable_with_it_listed_after_a_new_key(
    settings: Settings, redis: Redis, simulator: Simulator
) -> None:
    """A Redis written by the version before, which sealed with a key derived from RELAY_SIGNING_SECRETS: listing
    that secret after the new key in RELAY_ENCRYPTION_KEY, the upgraded relay reads every job it left."""
    upgraded = with_settings(settings, encryption_keys=(Fernet.generate_key().decode(), SECRET))
    assert Vault(upgraded.vault_keys).decrypt(SEALED_AT_60A5F05[0]) == SEALED_AT_60A5F05[1]
    old = Vault([SECRET])  # the derivation of the version before
    op = simulator.create(duration=0.2)
    job_id = secrets.token_hex(16)
    hook = Receiver(secrets=(JOB_SECRET,))
    await hook.start()
    store = open_store(settings)
    try:
        fields = {
            "owner": "public",
            "callback_url": hook.url,
            "drive_item_url": f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}",
            "authorization": old.encrypt("Bearer sim-token"),
            "secret": JOB_SECRET,  # stored in clear by the version before
        }
        await store.register(job_id, Job.from_hash(job_id, fields), op.monitor_url, sealed_url=old.seal(op.monitor_url))
    finally:
        await store.redis.aclose()
    try:
        async with running_worker(with_settings(upgraded, signing_secrets=(SECRET,))):
            await hook.wait_for(lambda: hook.terminal(job_id) is not None)
    finally:
        await hook.stop()
    done = hook.terminal(job_id)
    assert done is not None and done["type"] == "job.completed" and done["data"]["driveItem"]
    assert simulator.item_auth_headers == ["Bearer sim-token"] and hook.bad_signatures == 0


async def dump(redis: Redis) -> list[str]:
    """Every value Redis holds, as a dump of it would show them."""
    values: list[str] = []
    async for key in redis.scan_iter("*"):
        kind = await redis.type(key)
        if kind == "string":
            values.append(await redis.get(key) or "")
        elif kind == "hash":
            for field, value in (await redis.hgetall(key)).items():
                values.extend((field, value))
        elif kind == "list":
            values.extend(await redis.lrange(key, 0, -1))
        elif kind in ("set",):
            values.extend(await redis.smembers(key))
        elif kind == "zset":
            values.extend(member for member, _ in await redis.zrange(key, 0, -1, withscores=True))
        elif kind == "stream":
            for _, entry in await redis.xrange(key):
                values.extend(entry.values())
        values.append(key)
    return values


async def test_a_redis_dump_and_every_secret_a_receiver_holds_reveal_no_graph_token(
    settings: Settings, redis: Redis, simulator: Simulator
) -> None:
    hooks = {name: Receiver(secrets=()) for name in ("alpha", "beta")}
    for hook in hooks.values():
        await hook.start()
    custom = two_tenants(settings)
    graph_token = f"Bearer {simulator.tokens.issue()[0]}"  # a JWT-shaped Graph token the simulator takes
    ops = []
    try:
        async with running_api(custom) as api, running_worker(custom):
            for name, token in (("alpha", "token-a"), ("beta", "token-b")):
                for duration in (0.2, 60):  # one job ends (its token is forgotten), one still holds its token
                    op = simulator.create(duration=duration, monitor_style="sharepoint")
                    ops.append(op)
                    body: dict[str, Any] = {
                        "monitorUrl": op.monitor_url,
                        "callbackUrl": hooks[name].url,
                        "driveItemUrl": f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}",
                        "authorization": graph_token,
                        "secret": JOB_SECRET,
                    }
                    status, job, _ = await api.request("POST", "/v1/jobs", json=body, headers=auth(token))
                    assert status == 201, job
            for hook in hooks.values():
                await hook.wait_for(lambda hook=hook: any(r.event["type"] == "job.completed" for r in hook.received))
    finally:
        for hook in hooks.values():
            await hook.stop()
    values = await dump(redis)
    assert len(values) > 50
    receiver_holds = {SECRET, BETA_SECRET, JOB_SECRET, *custom.signing_secrets}  # every receiver's, together
    needles = [graph_token.split(" ")[1], JOB_SECRET]
    needles += [needle for op in ops for needle in (op.tempauth, op.monitor_url)]
    for value in values:
        assert not any(needle in value for needle in needles), "a secret is stored in clear"
        for secret in receiver_holds:
            with pytest.raises(InvalidToken):
                Vault([secret]).decrypt(value)


def test_dev_state_is_made_once_kept_private_and_read_again(tmp_path: Path) -> None:
    path = dev_state_path({"XDG_STATE_HOME": str(tmp_path)})
    assert path == tmp_path / "relay" / "dev.json" and load_dev_state(path) is None
    made = dev_state(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert made.signing_secret.startswith("whsec_") and Fernet(made.encryption_key.encode())
    assert dev_state(path) == made == load_dev_state(path)
    assert made.signing_secret not in repr(made) and made.encryption_key not in repr(made)
    path.chmod(0o644)  # copied about with looser rights: made private again when read
    assert load_dev_state(path) == made and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text(json.dumps({"encryptionKey": "short"}))
    with pytest.raises(ConfigError, match=str(path)):
        dev_state(path)
    assert dev_state_path({"XDG_STATE_HOME": "relative/dir"}) == Path.home() / ".local" / "state" / "relay" / "dev.json"
