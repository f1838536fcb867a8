"""RELAY_CREDENTIALS: the named credentials relay holds itself, validated once at start.

The value is inline JSON (it starts with ``{``) or the path of a ``.json`` or ``.toml`` file; either
holds one object of named credentials::

    {"backup": {"type": "clientSecret", "tenantId": "...", "clientId": "...", "clientSecretFile": "/run/secret",
                "tenants": ["backup-app"]}}

Only the structure is checked here. Files are read, and workload identity's environment defaults
resolved, by :class:`relay.credentials.broker.CredentialBroker` in the worker: the API, which needs only
names, tenants and item hosts, needs none of the secrets. Errors name RELAY_CREDENTIALS and the
field, never a value.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from yarl import URL

from relay.config.parsing import ConfigError

__all__ = [
    "GRAPH_SCOPE",
    "ClientCertificateSpec",
    "ClientSecretSpec",
    "CredentialSpec",
    "ManagedIdentitySpec",
    "WorkloadIdentitySpec",
    "find",
    "load_credentials",
]

VARIABLE = "RELAY_CREDENTIALS"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: what azure-identity accepts in a tenant id (validate_tenant_id): checked here so a typo stops the start, not a job
_TENANT_ID = re.compile(r"^[A-Za-z0-9.-]+$")
_AUTHORITY_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True, hide_input_in_errors=True
    )

    #: the key it is configured under (set by :func:`load_credentials`, not a field of the file)
    name: str = Field(default="", exclude=True)
    #: the one scope tokens are requested for; ``https://graph.microsoft.us/.default`` etc. for national clouds
    scope: str = GRAPH_SCOPE
    #: the Entra ID host (``login.microsoftonline.us``...); None: azure-identity's default (AZURE_AUTHORITY_HOST,
    #: else login.microsoftonline.com)
    authority: str | None = None
    #: names of the API tenants (API tokens) whose jobs may use it; ``*`` allows every tenant
    tenants: tuple[str, ...] = Field(min_length=1)
    #: host patterns its tokens may be sent to; None: the scope's own host
    item_hosts: tuple[str, ...] | None = None
    #: a PEM bundle trusted instead of the system's for the token endpoint (TLS-inspecting proxies, tests)
    ca_file: str | None = None

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        url = URL(value)
        if url.scheme != "https" or not url.host or not value.endswith("/.default"):
            raise ValueError(
                "must be an https resource followed by /.default, e.g. https://graph.microsoft.com/.default"
            )
        return value

    @field_validator("authority")
    @classmethod
    def _authority(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.removeprefix("https://").rstrip("/")
        if not _AUTHORITY_HOST.match(host):
            raise ValueError("must be a host such as login.microsoftonline.us (https is implied)")
        return host

    @field_validator("tenants", "item_hosts")
    @classmethod
    def _names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and any(not item.strip() for item in value):
            raise ValueError("must not contain empty names")
        return value

    @property
    def item_host_patterns(self) -> tuple[str, ...]:
        """Where this credential's tokens may go: ``itemHosts``, else the scope's host."""
        if self.item_hosts is not None:
            return tuple(h.lower() for h in self.item_hosts)
        return (str(URL(self.scope).host),)

    def allows(self, tenant: str) -> bool:
        return "*" in self.tenants or tenant in self.tenants


def _tenant_id(value: str) -> str:
    if not _TENANT_ID.match(value):
        raise ValueError("is not a tenant id (letters, digits, '-' and '.')")
    return value


TenantId = Annotated[str, AfterValidator(_tenant_id)]


class ClientSecretSpec(_Spec):
    type: Literal["clientSecret"]
    tenant_id: TenantId
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    #: a file holding the secret (a mounted Kubernetes Secret): read when the credential is built
    client_secret_file: str | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> ClientSecretSpec:
        if (self.client_secret is None) == (self.client_secret_file is None):
            raise ValueError("give exactly one of clientSecret and clientSecretFile")
        return self


class ClientCertificateSpec(_Spec):
    type: Literal["clientCertificate"]
    tenant_id: TenantId
    client_id: str = Field(min_length=1)
    #: PEM or PKCS12 with the private key
    certificate_path: str = Field(min_length=1)
    password: SecretStr | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one_password(self) -> ClientCertificateSpec:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give at most one of password and passwordFile")
        return self


class WorkloadIdentitySpec(_Spec):
    """Workload identity federation; what is not given comes from the variables AKS's webhook injects."""

    type: Literal["workloadIdentity"]
    #: default AZURE_TENANT_ID
    tenant_id: TenantId | None = None
    #: default AZURE_CLIENT_ID
    client_id: str | None = None
    #: default AZURE_FEDERATED_TOKEN_FILE
    token_file_path: str | None = None


class ManagedIdentitySpec(_Spec):
    type: Literal["managedIdentity"]
    #: a user-assigned identity's client id; None: the system-assigned identity
    client_id: str | None = None


CredentialSpec = Annotated[
    ClientSecretSpec | ClientCertificateSpec | WorkloadIdentitySpec | ManagedIdentitySpec,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[CredentialSpec] = TypeAdapter(CredentialSpec)


def find(specs: tuple[CredentialSpec, ...], name: str) -> CredentialSpec | None:
    return next((spec for spec in specs if spec.name == name), None)


def load_credentials(raw: str | None) -> tuple[CredentialSpec, ...]:
    """The credentials RELAY_CREDENTIALS describes (none when unset); :class:`ConfigError` when it is unusable."""
    if raw is None or not raw.strip():
        return ()
    document = _parse(raw.strip())
    if not isinstance(document, dict):
        raise ConfigError(f"{VARIABLE} must hold an object of named credentials")
    specs = []
    for name, body in document.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{VARIABLE}: a credential name must be 1-64 letters, digits, '.', '_' or '-'")
        if not isinstance(body, dict):
            raise ConfigError(f"{VARIABLE}: {name} must be an object")
        if "name" in body:
            raise ConfigError(f"{VARIABLE}: {name}.name: the key is the name; remove the field")
        try:
            spec = _ADAPTER.validate_python(body)
        except ValidationError as exc:
            raise ConfigError(f"{VARIABLE}: {name}{_describe(exc)}") from None
        specs.append(spec.model_copy(update={"name": name}))
    return tuple(specs)


def _parse(raw: str) -> Any:
    if raw.startswith("{"):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:  # the message has a position, not the text
            raise ConfigError(
                f"{VARIABLE} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
    path = Path(raw)
    if path.suffix not in (".json", ".toml"):
        raise ConfigError(f"{VARIABLE} must be inline JSON (starting with '{{') or a path ending in .json or .toml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{VARIABLE}: cannot read {path}: {reason}") from None
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{VARIABLE}: {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{VARIABLE}: {path} is not valid TOML: {exc}") from None


def _describe(exc: ValidationError) -> str:
    """The first problem as ``.field: message`` (pydantic's message only: inputs are never shown)."""
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    # the discriminated union puts the type's tag first in the location; the field names are the file's (camelCase)
    location = [str(part) for part in first["loc"] if part not in _TAGS]
    where = "." + ".".join(location) if location else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == "union_tag_invalid":  # pydantic's message repeats the value given
        message = "type must be one of " + ", ".join(sorted(_TAGS))
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}{more}"


_TAGS = {"clientSecret", "clientCertificate", "workloadIdentity", "managedIdentity"}
