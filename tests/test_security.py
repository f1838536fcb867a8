"""Security by default: credentials encrypted and scoped, nothing leaks, hostile peers cost one attempt."""

from __future__ import annotations

import base64
import binascii
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.core.crypto import InvalidToken, Vault, _aes_key, _fernet_key
from relay.core.monitor import Kind
from relay.outbound.client import create_session
from relay.outbound.ssrf import address_allowed
from relay.store import keys
from tests.helpers import ENCRYPTION_KEY, SECRET, Api, Receiver, eventually, running_worker, with_settings
from tests.hostile import start_hostile
from workers.poll import request_monitor

JOB_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    runner, base = await start_hostile()
    yield base
    await runner.cleanup()


@pytest.fixture
async def session(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    async with create_session(settings.internal_hosts) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/endless", Kind.INVALID),  # cut at 1 MiB
        ("/gzip-bomb", Kind.INVALID),  # cut at 1 MiB of decompressed bytes
        ("/slow", Kind.RETRY),  # cut by the request time limit
        ("/huge-headers", Kind.RETRY),  # refused by the header size limit
        ("/close", Kind.RETRY),  # truncated body
        ("/binary", Kind.INVALID),
        ("/wrong-content-type", Kind.PROGRESS),  # the body decides, not the label
    ],
)
async def test_hostile_monitor_costs_one_bounded_attempt(
    hostile: str, session: aiohttp.ClientSession, settings: Settings, path: str, expected: Kind
) -> None:
    custom = with_settings(settings, request_timeout=1.5)
    started = time.monotonic()
    result = await request_monitor(session, custom, hostile + path)
    assert result.kind is expected, result
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("path", ["/endless", "/slow", "/huge-headers", "/close", "/binary", "/gzip-bomb"])
async def test_hostile_callback_fails_the_attempt_and_the_worker_carries_on(
    api: Api, simulator: Any, receiver: Receiver, start_worker: Any, hostile: str, settings: Settings, path: str
) -> None:
    done = {"status": "completed", "percentageComplete": 100.0, "resourceId": "01A"}
    bad = await api.create(
        monitorUrl=simulator.create(script=[{"status": 202, "body": done}]).monitor_url, callbackUrl=hostile + path
    )
    good = await api.create(monitorUrl=simulator.create(duration=0.3).monitor_url, callbackUrl=receiver.url)
    async with start_worker(with_settings(settings, request_timeout=1.0, delivery_schedule=(0,))):
        await receiver.wait_for(lambda: receiver.terminal(good["id"]) is not None)

        async def attempted() -> bool:
            _, body, _ = await api.request("GET", f"/v1/jobs/{bad['id']}/deliveries")
            return bool(body["deliveries"])

        await eventually(attempted)
    _, body, _ = await api.request("GET", f"/v1/jobs/{bad['id']}/deliveries")
    attempt = body["deliveries"][0]
    if path in ("/endless", "/binary", "/gzip-bomb"):
        # a 2xx/202 is success whatever the body; the body is read no further than 64 KiB
        assert attempt["outcome"] in ("delivered", "dead")
    else:
        assert attempt["outcome"] == "dead" and attempt["status"] is None and attempt["error"]


async def test_authorization_encrypted_at_rest_sent_only_to_item_host_and_deleted_at_end(
    api: Api, simulator: Any, receiver: Receiver, worker: Any, redis: Redis
) -> None:
    op = simulator.create(duration=0.3)
    job = await api.create(
        monitorUrl=op.monitor_url,
        callbackUrl=receiver.url,
        driveItemUrl=f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}",
        authorization="Bearer sim-token",
        secret=JOB_SECRET,
    )
    stored = await redis.hget(keys.job(job["id"]), "authorization")
    assert stored is not None and "sim-token" not in stored
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    assert simulator.item_auth_headers == ["Bearer sim-token"]  # the monitor never got it: it answers 400 if it does
    assert await redis.hget(keys.job(job["id"]), "authorization") is None

    # nothing secret in any response or event
    texts = [r.body.decode() for r in receiver.received]
    for path in ("", "/deliveries"):
        _, body, _ = await api.request("GET", f"/v1/jobs/{job['id']}{path}")
        texts.append(str(body))
    for text in texts:
        for needle in ("sim-token", JOB_SECRET, SECRET, op.monitor_url, op.id):
            assert needle not in text


def test_vault_rotation_and_wrong_key() -> None:
    old = Vault(["first-key-material"])
    token = old.encrypt("Bearer abc")
    assert "abc" not in token
    assert Vault(["second", "first-key-material"]).decrypt(token) == "Bearer abc"
    with pytest.raises(InvalidToken):
        Vault(["other"]).decrypt(token)
    with pytest.raises(InvalidToken):
        Vault([]).decrypt(token)
    with pytest.raises(InvalidToken):
        old.decrypt(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))  # tampered: the tag fails
    assert old.decrypt(old.encrypt("Bearer abc")) == "Bearer abc" and old.encrypt("x") != old.encrypt("x")


def test_vault_still_reads_fernet_tokens() -> None:
    """Tokens written before values were sealed with AES-GCM: the same key material opens them."""
    legacy = Fernet(_fernet_key("first-key-material")).encrypt(b"Bearer old").decode()
    assert Vault(["second", "first-key-material"]).decrypt(legacy) == "Bearer old"
    with pytest.raises(InvalidToken):
        Vault(["other"]).decrypt(legacy)


def test_vault_seals_without_base64_padding_and_still_reads_padded_values() -> None:
    """New values carry no ``=`` padding (two characters of a 120-character monitor URL's 203, and the monitor hash's
    listpack a jemalloc size class, 64 B a job: docs/performance.md "Memory"); what earlier versions sealed, padded,
    still opens. The padded values are made here as they were made, from the same key: nonce, AES-256-GCM, base64."""
    vault = Vault(["first-key-material"])
    aead = AESGCM(_aes_key(_fernet_key("first-key-material")))
    for length in (0, 1, 2, 3, 4, 5, 120, 121, 122):  # every length mod 3 of nonce + ciphertext + tag
        value = "u" * length
        sealed = vault.encrypt(value)
        raw = 12 + length + 16  # the 12-byte random nonce and the full 16-byte tag are still all there
        assert "=" not in sealed and len(sealed) == 3 + -(-raw * 4 // 3)
        assert vault.decrypt(sealed) == value and vault.reveal(sealed) == value
        nonce = os.urandom(12)
        padded = "g1." + base64.urlsafe_b64encode(nonce + aead.encrypt(nonce, value.encode(), None)).decode()
        assert padded.endswith("=") == (raw % 3 != 0)
        assert vault.decrypt(padded) == value and Vault(["second", "first-key-material"]).decrypt(padded) == value
        with pytest.raises(InvalidToken):
            Vault(["other"]).decrypt(padded)
    assert len(vault.encrypt("u" * 120)) == 201  # the bench's monitor URL (row 4): 203 padded
    for bad in ("g1.A", "g1.AAAAA", "g1." + "A" * 37, "g1.!!!!"):  # 1 mod 4 is no base64; too short; not base64
        with pytest.raises(InvalidToken):
            vault.decrypt(bad)


def opened_as_before(token: str, material: str = ENCRYPTION_KEY) -> str:
    """A ``g1.`` value opened as 3e7c09e (the version before unpadded values) did: its base64 decoded as it is, so a
    value without its ``=`` padding raises (binascii.Error)."""
    # what 3e7c09e does (relay/core/crypto.py, Vault.decrypt)
    raw = base64.urlsafe_b64decode(token[len("g1.") :])
    nonce, sealed = raw[:12], raw[12:]
    return AESGCM(_aes_key(_fernet_key(material))).decrypt(nonce, sealed, None).decode()


def test_a_vault_made_padded_seals_what_earlier_versions_open() -> None:
    """RELAY_STORE_LEGACY_FORMAT=on (the API's vault made ``padded``): sealed values keep base64's padding, which
    versions before 2026-12-07 require; off (the default), they do not, and those versions cannot open them."""
    padded, unpadded = Vault(["first-key-material"], padded=True), Vault(["first-key-material"])
    for length in (0, 1, 2, 3, 4, 5, 120, 121, 122):  # every length mod 3 of nonce + ciphertext + tag
        value = "u" * length
        sealed = padded.encrypt(value)
        assert sealed.startswith("g1.") and len(sealed[3:]) % 4 == 0
        assert opened_as_before(sealed, "first-key-material") == value
        assert padded.decrypt(sealed) == value and unpadded.decrypt(sealed) == value
        assert padded.decrypt(unpadded.encrypt(value)) == value
        if (12 + length + 16) % 3:  # a length that needs padding: without it, the earlier version refuses the value
            sealed = unpadded.encrypt(value)
            assert len(sealed[3:]) % 4 != 0
            with pytest.raises(binascii.Error):
                opened_as_before(sealed, "first-key-material")
    assert len(padded.encrypt("u" * 120)) == 203  # the bench's monitor URL: 201 unpadded
    assert Vault([], padded=True).seal("https://a.example/m") == "https://a.example/m"  # no key: as is, still


@pytest.mark.parametrize("on", [False, True])
def test_the_api_seals_padded_only_with_the_legacy_format(settings: Settings, on: bool) -> None:
    """The API's vault is made from RELAY_STORE_LEGACY_FORMAT (relay/api/app.py)."""
    from relay.api.app import create_app
    from relay.api.typedefs import VAULT

    app = create_app(with_settings(settings, store_legacy_format=on))
    sealed = app[VAULT].seal("u" * 120)
    assert len(sealed) == (203 if on else 201) and app[VAULT].reveal(sealed) == "u" * 120


@pytest.mark.parametrize(
    "callback",
    [
        "http://localhost:1029/h",
        "http://app.localhost/h",
        "http://[::1]/h",
        "http://0.0.0.0/h",
        "http://[fec0::1]:8080/h",
        "http://[::ffff:10.0.0.1]:8080/h",
        "http://[64:ff9b::169.254.169.254]/h",
    ],
)
async def test_loopback_callbacks_refused_at_registration(settings: Settings, redis: Redis, callback: str) -> None:
    from tests.helpers import running_api

    async with running_api(with_settings(settings, internal_hosts=("127.0.0.1",))) as api:
        status, problem, _ = await api.request(
            "POST", "/v1/jobs", json={"monitorUrl": "http://127.0.0.1:1029/m", "callbackUrl": callback}
        )
        assert status == 422 and problem["errors"][0]["field"] == "callbackUrl"
        assert "RELAY_INTERNAL_HOSTS" in problem["errors"][0]["message"], "the refusal names the setting that allows it"


async def test_name_resolving_to_loopback_is_refused_at_connect_time(settings: Settings) -> None:
    # registration cannot know what a name resolves to; the guarded resolver refuses it when connecting
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 9)}
    except OSError:
        pytest.skip("this machine's host name does not resolve")
    if any(address_allowed(a) for a in addresses):
        pytest.skip("this machine's host name resolves to a public address")
    strict = with_settings(settings, internal_hosts=(), monitor_allowed_hosts=(name,))
    async with create_session(()) as client:
        result = await request_monitor(client, strict, f"http://{name}:1029/monitor/1")
    assert result.kind is Kind.RETRY and "network" in result.detail


async def test_monitor_urls_are_sealed_at_rest_and_still_polled_after_a_key_rotation(
    api: Api, simulator: Any, receiver: Receiver, settings: Settings, redis: Redis
) -> None:
    op = simulator.create(duration=0.3, monitor_style="sharepoint")  # its URL carries a tempauth capability
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    values = []
    for key in await redis.keys(f"{keys.PREFIX}*"):
        if await redis.type(key) == "hash":
            values.extend((await redis.hgetall(key)).values())
    assert values and not any(op.tempauth in v or op.id in v for v in values), "a monitor URL is stored in clear"
    rotated = with_settings(settings, encryption_keys=("new-key", *settings.vault_keys))
    async with running_worker(rotated):
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    assert receiver.terminal(job["id"])["type"] == "job.completed"  # type: ignore[index]
    assert op.polls >= 1
