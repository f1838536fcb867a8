"""RELAY_CREDENTIALS: inline JSON or a .json/.toml file, validated at start, errors in one line without values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relay.config.credentials import (
    GRAPH_SCOPE,
    ClientCertificateSpec,
    ClientSecretSpec,
    ManagedIdentitySpec,
    WorkloadIdentitySpec,
    find,
    load_credentials,
)
from relay.config.settings import ConfigError, Settings

SECRET = "s3cr3t-Value~never.shown"

BACKUP = {
    "type": "clientSecret",
    "tenantId": "contoso.onmicrosoft.com",
    "clientId": "11111111-2222-3333-4444-555555555555",
    "clientSecret": SECRET,
    "tenants": ["backup-app"],
}

TOML = f"""
[backup]
type = "clientSecret"
tenantId = "contoso.onmicrosoft.com"
clientId = "11111111-2222-3333-4444-555555555555"
clientSecretFile = "/run/secrets/graph"
tenants = ["backup-app", "migration"]

[gov]
type = "clientCertificate"
tenantId = "fabrikam.onmicrosoft.us"
clientId = "c"
certificatePath = "/run/certs/app.pem"
password = "{SECRET}"
authority = "login.microsoftonline.us"
scope = "https://graph.microsoft.us/.default"
tenants = ["*"]

[aks]
type = "workloadIdentity"
tenants = ["provisioning"]

[vm]
type = "managedIdentity"
clientId = "uami"
tenants = ["*"]
itemHosts = ["graph.microsoft.com", "*.sharepoint.com"]
"""


def test_unset_means_no_credentials() -> None:
    assert Settings.from_env({}).credentials == ()
    assert load_credentials("  ") == ()


def test_inline_json_is_read_by_settings() -> None:
    settings = Settings.from_env({"RELAY_CREDENTIALS": json.dumps({"backup": BACKUP})})
    (spec,) = settings.credentials
    assert isinstance(spec, ClientSecretSpec)
    assert spec.name == "backup" and spec.scope == GRAPH_SCOPE and spec.authority is None
    assert spec.client_secret is not None and spec.client_secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings), "the secret is a SecretStr: never in a repr"


def test_toml_file_with_every_type(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text(TOML)
    specs = load_credentials(str(path))
    assert [s.name for s in specs] == ["backup", "gov", "aks", "vm"]
    backup, gov, aks, vm = specs
    assert isinstance(backup, ClientSecretSpec) and backup.client_secret_file == "/run/secrets/graph"
    assert isinstance(gov, ClientCertificateSpec) and gov.authority == "login.microsoftonline.us"
    assert isinstance(aks, WorkloadIdentitySpec) and aks.client_id is None, "filled from AZURE_* by the broker"
    assert isinstance(vm, ManagedIdentitySpec) and vm.client_id == "uami"
    assert find(specs, "gov") is gov and find(specs, "nope") is None


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"backup": BACKUP}))
    assert [s.name for s in load_credentials(str(path))] == ["backup"]


def test_tenants_decide_who_may_use_a_credential() -> None:
    backup, gov = load_credentials(json.dumps({"backup": BACKUP, "gov": {**BACKUP, "tenants": ["*"]}}))
    assert backup.allows("backup-app") and not backup.allows("other-app")
    assert gov.allows("other-app") and gov.allows("backup-app")


def test_tokens_go_to_the_scopes_host_unless_item_hosts_say_otherwise() -> None:
    specs = load_credentials(
        json.dumps(
            {
                "public": BACKUP,
                "us": {**BACKUP, "scope": "https://graph.microsoft.us/.default"},
                "wide": {**BACKUP, "itemHosts": ["Graph.Microsoft.com", "*.sharepoint.com"]},
            }
        )
    )
    assert [s.item_host_patterns for s in specs] == [
        ("graph.microsoft.com",),
        ("graph.microsoft.us",),
        ("graph.microsoft.com", "*.sharepoint.com"),
    ]


def _with(**changes: Any) -> str:
    body = {**BACKUP, **changes}
    return json.dumps({"backup": {k: v for k, v in body.items() if v is not None}})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json and no suffix", "must be inline JSON"),
        ("{ broken", "is not valid JSON"),
        ("/nowhere/credentials.toml", "cannot read /nowhere/credentials.toml"),
        ('["backup"]', "must be inline JSON"),
        (json.dumps({"bad name!": BACKUP}), "credential name"),
        (json.dumps({"backup": SECRET}), "backup must be an object"),
        (json.dumps({"backup": {**BACKUP, "name": "x"}}), "the key is the name"),
        (_with(type=SECRET), "type must be one of clientCertificate, clientSecret, managedIdentity, workloadIdentity"),
        (_with(clientSecretFile="/run/x"), "exactly one of clientSecret and clientSecretFile"),
        (_with(clientSecret=None), "exactly one of clientSecret and clientSecretFile"),
        (_with(tenants=None), "backup.tenants: Field required"),
        (_with(tenants=[]), "backup.tenants"),
        (_with(tenants=[" "]), "backup.tenants: must not contain empty names"),
        (_with(tenantId="contoso/../x"), "backup.tenantId: is not a tenant id"),
        (_with(scope="https://graph.microsoft.com"), "backup.scope: must be an https resource followed by /.default"),
        (_with(scope="http://graph.microsoft.com/.default"), "backup.scope"),
        (_with(authority="http://login.example"), "backup.authority"),
        (_with(clientSecrett=SECRET), "backup.clientSecrett: Extra inputs are not permitted"),
        (_with(clientId=7), "backup.clientId: Input should be a valid string"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_variable_and_never_a_value(raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"RELAY_CREDENTIALS": raw})
    message = str(info.value)
    assert message.startswith("RELAY_CREDENTIALS") and "\n" not in message
    assert expected in message
    assert SECRET not in message


def test_a_file_must_hold_an_object(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text('["backup"]')
    with pytest.raises(ConfigError, match="must hold an object of named credentials"):
        load_credentials(str(path))


def test_a_bad_toml_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text(f'[backup]\nclientSecret = "{SECRET}\n')
    with pytest.raises(ConfigError, match="is not valid TOML") as info:
        load_credentials(str(path))
    assert SECRET not in str(info.value)
