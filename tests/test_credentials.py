"""Credentials relay holds itself: the real azure-identity library against a token endpoint double over TLS.

No part of azure-identity is replaced. The double (tests/token_double.py) listens on 127.0.0.1 with a
certificate from a test CA (trustme); each credential trusts that CA through its ``caFile`` (azure-core's
``connection_verify``), the way a deployment behind a TLS-inspecting proxy would. Tokens live 1-2 s where
a test needs one to expire.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from relay import logs
from relay.config.credentials import CredentialSpec, load_credentials
from relay.config.settings import ConfigError
from relay.credentials.broker import CredentialBroker, CredentialError
from tests.test_deploy import env as container_env
from tests.test_deploy import one, relay_containers, render
from tests.token_double import App, TokenDouble, certificate_pem, jwt_claims

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "Qm8~s3cr3t.value-never_logged"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
async def double(ca: trustme.CA) -> AsyncIterator[TokenDouble]:
    server = TokenDouble(ca)
    await server.start()
    yield server
    await server.stop()


BrokerFactory = Callable[..., CredentialBroker]


@pytest.fixture
async def make_broker(double: TokenDouble, ca_file: str) -> AsyncIterator[BrokerFactory]:
    """A broker for one credential ``app`` pointed at the double (authority, tenant, CA) unless told otherwise."""
    brokers: list[CredentialBroker] = []

    def make(*, env: dict[str, str] | None = None, **fields: Any) -> CredentialBroker:
        body = {"authority": double.authority, "caFile": ca_file, "tenants": ["backup-app"], **fields}
        if body["type"] in ("clientSecret", "clientCertificate"):
            body.setdefault("tenantId", double.tenant)
            body.setdefault("clientId", CLIENT_ID)
        body = {k: v for k, v in body.items() if v is not None}
        specs: tuple[CredentialSpec, ...] = load_credentials(json.dumps({"app": body}))
        broker = CredentialBroker(specs, timeout=5.0, env=env or {})
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        await broker.close()


async def token_of(broker: CredentialBroker, name: str = "app") -> str:
    header = await broker.authorization(name)
    scheme, _, token = header.partition(" ")
    assert scheme == "Bearer" and token
    return token


async def wait_expired(double: TokenDouble, token: str) -> None:
    """Until the token the library holds has expired (its ``exp`` is whole seconds)."""
    await asyncio.sleep(max(0.0, double.issued_for(token).expires_on - time.time()) + 0.01)


def token_requests(double: TokenDouble) -> list[dict[str, str]]:
    return [s.form for s in double.seen if s.path.endswith("/oauth2/v2.0/token")]


# ---- each type gets a token --------------------------------------------------------------------


async def test_client_secret_gets_a_graph_token_and_the_library_caches_it(
    double: TokenDouble, make_broker: BrokerFactory
) -> None:
    double.apps[CLIENT_ID] = App(secret=SECRET)
    broker = make_broker(type="clientSecret", clientSecret=SECRET)
    token = await token_of(broker)
    assert double.accepts(token)
    issued = double.issued_for(token)
    assert (issued.grant, issued.client_id, issued.audience) == (
        "client_secret",
        CLIENT_ID,
        "https://graph.microsoft.com",
    )
    assert jwt_claims(token)["aud"] == "https://graph.microsoft.com"
    assert await token_of(broker) == token, "valid for an hour: the library answers from its cache"
    (request,) = token_requests(double)
    assert request["scope"] == "https://graph.microsoft.com/.default"
    assert request["grant_type"] == "client_credentials"
    # the async credentials go straight to the v2.0 token endpoint: no discovery, nothing else
    assert double.paths() == {f"/{double.tenant}/oauth2/v2.0/token"}


async def test_client_certificate_signs_an_assertion_the_platform_verifies(
    double: TokenDouble, make_broker: BrokerFactory, ca: trustme.CA, tmp_path: Path
) -> None:
    pem, certificate = certificate_pem(ca, password=b"pem-pass")
    path = tmp_path / "app.pem"
    path.write_bytes(pem)
    double.apps[CLIENT_ID] = App(certificate=certificate)
    broker = make_broker(type="clientCertificate", certificatePath=str(path), password="pem-pass")
    token = await token_of(broker)
    assert double.issued_for(token).grant == "certificate"
    (request,) = token_requests(double)
    assert "client_secret" not in request and request["client_assertion"].count(".") == 2


async def test_workload_identity_uses_what_the_aks_webhook_injects(
    double: TokenDouble, make_broker: BrokerFactory, tmp_path: Path
) -> None:
    federated = "eyJhbGciOiJSUzI1NiJ9.service-account-token-1.sig"
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(federated)
    double.apps["wi-client"] = App(federated={federated})
    env = {
        "AZURE_CLIENT_ID": "wi-client",
        "AZURE_TENANT_ID": double.tenant,
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
    }
    broker = make_broker(type="workloadIdentity", env=env)
    token = await token_of(broker)
    assert double.issued_for(token).grant == "federated"
    (request,) = token_requests(double)
    assert (request["client_id"], request["client_assertion"]) == ("wi-client", federated)


async def test_managed_identity_through_the_app_service_endpoint(
    double: TokenDouble, make_broker: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # azure-identity picks the managed identity source from the process environment
    for variable in (
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "IMDS_ENDPOINT",
        "IDENTITY_SERVER_THUMBPRINT",
        "AZURE_FEDERATED_TOKEN_FILE",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", double.msi_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", double.identity_header)
    broker = make_broker(type="managedIdentity", clientId="uami-client", authority=None)
    token = await token_of(broker)
    issued = double.issued_for(token)
    assert (issued.grant, issued.client_id, issued.audience) == (
        "managed_identity",
        "uami-client",
        "https://graph.microsoft.com",
    )
    (seen,) = double.seen
    assert seen.path == "/msi/token" and seen.query["resource"] == "https://graph.microsoft.com"


# ---- expiry and rotation -----------------------------------------------------------------------


async def test_a_token_that_expires_is_replaced_by_a_fresh_one_from_the_library(
    double: TokenDouble, make_broker: BrokerFactory
) -> None:
    double.apps[CLIENT_ID] = App(secret=SECRET)
    double.lifetime = 2
    broker = make_broker(type="clientSecret", clientSecret=SECRET)
    first = await token_of(broker)
    assert await token_of(broker) == first, "still valid: from the cache"
    assert len(token_requests(double)) == 1
    await wait_expired(double, first)
    second = await token_of(broker)
    assert second != first
    assert double.accepts(second) and not double.accepts(first)
    assert len(token_requests(double)) == 2


async def test_concurrent_requests_share_one_token_request(double: TokenDouble, make_broker: BrokerFactory) -> None:
    double.apps[CLIENT_ID] = App(secret=SECRET)
    broker = make_broker(type="clientSecret", clientSecret=SECRET)
    tokens = await asyncio.gather(*(token_of(broker) for _ in range(20)))
    assert len(set(tokens)) == 1
    assert len(token_requests(double)) == 1


async def test_a_rotated_federated_token_file_is_read_again(
    double: TokenDouble, make_broker: BrokerFactory, tmp_path: Path
) -> None:
    """azure-identity's WorkloadIdentityCredential re-reads its token file only when it requests a token and
    its copy is more than 600 s old (TokenFileMixin._get_service_account_token). So within one test: a
    rotation alone changes nothing while the platform still accepts the old file (as it does on AKS, where
    the kubelet rotates well before expiry); once the platform refuses it, relay builds the credential
    again, which reads the new file at once."""
    old, new = "sa-token.rotation-1.sig", "sa-token.rotation-2.sig"
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(old)
    double.apps["wi-client"] = App(federated={old})
    double.lifetime = 1
    env = {
        "AZURE_CLIENT_ID": "wi-client",
        "AZURE_TENANT_ID": double.tenant,
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
    }
    broker = make_broker(type="workloadIdentity", env=env)
    first = await token_of(broker)

    token_file.write_text(new)  # the kubelet rotates the projected token
    double.apps["wi-client"].federated.add(new)
    await wait_expired(double, first)
    second = await token_of(broker)
    assert [r["client_assertion"] for r in token_requests(double)] == [old, old], "the library's 10-minute copy"

    double.apps["wi-client"].federated.discard(old)  # the old one has expired at the platform
    await wait_expired(double, second)
    third = await token_of(broker)
    assert double.accepts(third) and double.issued_for(third).grant == "federated"
    assert [r["client_assertion"] for r in token_requests(double)] == [old, old, old, new]
    assert double.refusals == ["AADSTS700024"]


async def test_a_rotated_secret_file_is_read_again_when_the_old_secret_is_refused(
    double: TokenDouble, make_broker: BrokerFactory, tmp_path: Path
) -> None:
    secret_file = tmp_path / "graph-secret"
    secret_file.write_text("old-secret\n")
    double.apps[CLIENT_ID] = App(secret="old-secret")
    double.lifetime = 1
    broker = make_broker(type="clientSecret", clientSecretFile=str(secret_file))
    first = await token_of(broker)
    secret_file.write_text("new-secret\n")
    double.apps[CLIENT_ID].secret = "new-secret"
    await wait_expired(double, first)
    second = await token_of(broker)
    assert double.accepts(second)
    assert [r["client_secret"] for r in token_requests(double)] == ["old-secret", "old-secret", "new-secret"]


# ---- failures: one exception type, safe messages -----------------------------------------------


async def test_a_wrong_secret_is_a_credential_error_that_shows_no_secret(
    double: TokenDouble, make_broker: BrokerFactory
) -> None:
    double.apps[CLIENT_ID] = App(secret="the-right-one")
    broker = make_broker(type="clientSecret", clientSecret=SECRET)
    stream = io.StringIO()
    logs.configure("json", logging.INFO, stream)
    try:
        with pytest.raises(CredentialError) as info:
            await broker.authorization("app")
    finally:
        logs.configure("json", logging.WARNING)
    error = info.value
    assert (error.name, error.reason) == ("app", "refused")
    assert str(error) == "credential 'app': refused: HTTP 401 invalid_client AADSTS7000215"
    assert len(token_requests(double)) == 2, "refused: built again (files re-read) and asked once more"
    assert "get_token_info failed" in stream.getvalue(), "azure-identity's warning is logged"
    for text in (str(error), repr(error), stream.getvalue()):
        assert SECRET not in text


async def test_the_token_endpoint_must_present_a_trusted_certificate(
    double: TokenDouble, make_broker: BrokerFactory
) -> None:
    double.apps[CLIENT_ID] = App(secret=SECRET)
    broker = make_broker(type="clientSecret", clientSecret=SECRET, caFile=None)  # the system's CAs only
    with pytest.raises(CredentialError) as info:
        await broker.authorization("app")
    assert info.value.reason == "unreachable"
    assert "Certificate" in info.value.detail
    assert token_requests(double) == [], "no secret sent over an untrusted connection"


async def test_unknown_names_and_tenants(make_broker: BrokerFactory) -> None:
    broker = make_broker(
        type="clientSecret", clientSecret=SECRET, itemHosts=["graph.microsoft.com", "*.sharepoint.com"]
    )
    assert broker.names == ("app",)
    assert broker.allows("app", "backup-app") and not broker.allows("app", "other-app")
    assert not broker.allows("nope", "backup-app")
    assert broker.may_send("app", "contoso.sharepoint.com") and not broker.may_send("app", "evil.example")
    assert broker.item_hosts("nope") == () and not broker.may_send("nope", "graph.microsoft.com")
    with pytest.raises(CredentialError, match="'nope': unknown"):
        await broker.authorization("nope")


def test_a_workload_identity_without_its_variables_stops_the_start(make_broker: BrokerFactory) -> None:
    with pytest.raises(ConfigError, match="AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE") as info:
        make_broker(type="workloadIdentity", env={"AZURE_TENANT_ID": "t"})
    assert "\n" not in str(info.value)


def test_an_unreadable_file_stops_the_start(make_broker: BrokerFactory, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"client_secret_file .* is not a readable file"):
        make_broker(type="clientSecret", clientSecretFile=str(tmp_path / "missing"))


async def test_the_workload_identity_overlay_gets_a_token_with_what_the_webhook_injects(
    double: TokenDouble, ca_file: str, tmp_path: Path
) -> None:
    """deploy/k8s/overlays/sidecar-workload-identity's worker, given the variables AKS's webhook injects."""
    objects = render("sidecar-workload-identity")
    (worker,) = [c for _, c in relay_containers(objects) if c["args"] == ["worker"]]
    account = one(objects, "ServiceAccount", "example-app")
    client_id = account["metadata"]["annotations"]["azure.workload.identity/client-id"]
    federated = "projected.service-account.token"
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(federated)
    double.apps[client_id] = App(federated={federated})
    injected = {
        "AZURE_CLIENT_ID": client_id,
        "AZURE_TENANT_ID": double.tenant,
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "AZURE_AUTHORITY_HOST": f"https://{double.authority}/",
    }
    (spec,) = load_credentials(container_env(worker)["RELAY_CREDENTIALS"]["value"])
    # the one change: trust the test CA (on AKS, Entra ID's certificate chains to the system's CAs)
    broker = CredentialBroker([spec.model_copy(update={"ca_file": ca_file})], timeout=5.0, env=injected)
    try:
        token = await token_of(broker, "graph")
    finally:
        await broker.close()
    assert double.issued_for(token).grant == "federated"
    assert broker.allows("graph", "any-tenant") and broker.item_hosts("graph") == ("graph.microsoft.com",)
