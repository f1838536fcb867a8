"""Tokens from the credentials relay holds itself, through Microsoft's azure-identity (async credentials).

One :class:`CredentialBroker` per worker process builds each configured credential on first use
(client secret, client certificate, workload identity federation, managed identity) and asks it for a
token for the credential's scope. Caching and refreshing are the library's: a token is reused while
valid and requested again when it expires (or 5 minutes before, for long-lived ones). The broker adds
three things: one token request at a time per credential (concurrent resolutions then share the
answer), a rebuild when the identity platform refuses the credential (files are read again: a rotated
secret, certificate or federated token file counts at once), and one exception type whose message
names no secret and no token.

azure-identity's WorkloadIdentityCredential reads its token file again only when it needs a new token
*and* its copy is over 10 minutes old; AKS's kubelet rotates that file well before it expires, so the
copy it holds is always still valid. If the platform refuses it anyway, the rebuild reads the file at once.

azure-identity (with azure-core, msal and requests: ~20 MiB resident) is imported when the first credential is
built, not with this module: a worker or an API with no ``RELAY_CREDENTIALS`` never loads it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay.config.parsing import ConfigError
from relay.core.hosts import host_matches

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncSupportsTokenInfo

    from relay.config.credentials import CredentialSpec

__all__ = ["CredentialBroker", "CredentialError"]

#: AKS's workload identity webhook injects these (and AZURE_AUTHORITY_HOST); workloadIdentity defaults to them
_WORKLOAD_ENV = {
    "tenant_id": "AZURE_TENANT_ID",
    "client_id": "AZURE_CLIENT_ID",
    "token_file_path": "AZURE_FEDERATED_TOKEN_FILE",
}
_OAUTH_ERROR = re.compile(r"\((\w+)\)")
_AADSTS = re.compile(r"\bAADSTS\d+\b")


class CredentialError(Exception):
    """No token from a configured credential. ``reason``: unknown, misconfigured, unavailable, refused, unreachable."""

    def __init__(self, name: str, reason: str, detail: str) -> None:
        super().__init__(f"credential {name!r}: {reason}: {detail}")
        self.name = name
        self.reason = reason
        self.detail = detail


class CredentialBroker:
    """Builds the configured credentials lazily and hands out ``Authorization`` header values."""

    def __init__(
        self, specs: Iterable[CredentialSpec], *, timeout: float = 15.0, env: Mapping[str, str] | None = None
    ) -> None:
        """``timeout`` bounds each request to the token endpoint; ``env`` supplies workload identity's defaults.

        Raises :class:`ConfigError` when a credential cannot work here (a workload identity without its
        variables, a file that is not readable): better at start than at the first completed copy.
        """
        env = os.environ if env is None else env
        self._specs = {spec.name: _resolved(spec, env) for spec in specs}
        self._timeout = timeout
        self._built: dict[str, AsyncSupportsTokenInfo] = {}
        self._locks = {name: asyncio.Lock() for name in self._specs}
        # The SDK logs every token request's URL and headers at INFO: noise. Its warnings (why a request failed,
        # without secrets or tokens) stay.
        azure_logger = logging.getLogger("azure")
        if azure_logger.level == logging.NOTSET:
            azure_logger.setLevel(logging.WARNING)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def allows(self, name: str, tenant: str) -> bool:
        """May jobs of API tenant ``tenant`` name credential ``name``? False for an unknown name."""
        spec = self._specs.get(name)
        return spec is not None and spec.allows(tenant)

    def item_hosts(self, name: str) -> tuple[str, ...]:
        """Host patterns this credential's tokens may be sent to (nothing for an unknown name)."""
        spec = self._specs.get(name)
        return spec.item_host_patterns if spec is not None else ()

    def may_send(self, name: str, host: str) -> bool:
        return host_matches(host, self.item_hosts(name))

    async def authorization(self, name: str) -> str:
        """``Bearer <token>`` for credential ``name``'s scope; :class:`CredentialError` when there is none."""
        spec = self._specs.get(name)
        if spec is None:
            raise CredentialError(name, "unknown", "no credential of that name is configured")
        async with self._locks[name]:
            try:
                # a last bound over the library's own retries
                async with asyncio.timeout(4 * self._timeout):
                    token = await self._token(spec)
            except TimeoutError:
                raise CredentialError(name, "unreachable", f"no token within {4 * self._timeout:g} s") from None
        return f"Bearer {token}"

    async def _token(self, spec: CredentialSpec) -> str:
        credential = await self._credential(spec)
        # loaded by the credential's build above
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import CredentialUnavailableError

        try:
            return (await credential.get_token_info(spec.scope)).token
        except CredentialUnavailableError as exc:
            raise _safe_error(spec.name, exc) from None
        except ClientAuthenticationError:
            pass  # refused: build it again from its files and ask once more
        except Exception as exc:
            raise _safe_error(spec.name, exc) from None
        await self._discard(spec.name)
        credential = await self._credential(spec)
        try:
            return (await credential.get_token_info(spec.scope)).token
        except Exception as exc:
            raise _safe_error(spec.name, exc) from None

    async def _credential(self, spec: CredentialSpec) -> AsyncSupportsTokenInfo:
        credential = self._built.get(spec.name)
        if credential is None:
            try:
                credential = _build(spec, self._timeout)
            except Exception as exc:
                raise _safe_error(spec.name, exc) from None
            self._built[spec.name] = credential
        return credential

    async def _discard(self, name: str) -> None:
        credential = self._built.pop(name, None)
        if credential is not None:
            await credential.close()

    async def close(self) -> None:
        for name in list(self._built):
            await self._discard(name)


def _resolved(spec: CredentialSpec, env: Mapping[str, str]) -> CredentialSpec:
    """``spec`` with workload identity's defaults filled in; :class:`ConfigError` for what cannot work."""
    # the specs' pydantic models: loaded by the settings that hold a credential, so no sooner than one is configured
    from relay.config.credentials import WorkloadIdentitySpec

    if isinstance(spec, WorkloadIdentitySpec):
        filled = {field: getattr(spec, field) or env.get(variable) for field, variable in _WORKLOAD_ENV.items()}
        missing = [variable for field, variable in _WORKLOAD_ENV.items() if not filled[field]]
        if missing:
            raise ConfigError(
                f"RELAY_CREDENTIALS: {spec.name} (workloadIdentity) has no {', '.join(missing)} "
                '(set the field, or label the pod azure.workload.identity/use: "true")'
            )
        authority = spec.authority or env.get("AZURE_AUTHORITY_HOST")  # the webhook sets it for national clouds
        spec = spec.model_copy(update={**filled, "authority": authority})
    for field in ("client_secret_file", "certificate_path", "password_file", "token_file_path", "ca_file"):
        path = getattr(spec, field, None)
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"RELAY_CREDENTIALS: {spec.name}: {field} {path} is not a readable file")
    return spec


def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def _build(spec: CredentialSpec, timeout: float) -> AsyncSupportsTokenInfo:
    """The azure-identity credential for ``spec``; files are read now."""
    from azure.identity.aio import (
        CertificateCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
        WorkloadIdentityCredential,
    )

    from relay.config.credentials import (
        ClientCertificateSpec,
        ClientSecretSpec,
        ManagedIdentitySpec,
        WorkloadIdentitySpec,
    )

    # one immediate retry in the library; relay's own resolution schedule retries after that
    options: dict[str, Any] = {"connection_timeout": timeout, "read_timeout": timeout, "retry_total": 1}
    if spec.ca_file is not None:
        options["connection_verify"] = spec.ca_file
    if spec.authority is not None:
        options["authority"] = spec.authority
    if isinstance(spec, ClientSecretSpec):
        secret = spec.client_secret.get_secret_value() if spec.client_secret else _read(str(spec.client_secret_file))
        return ClientSecretCredential(spec.tenant_id, spec.client_id, secret, **options)
    if isinstance(spec, ClientCertificateSpec):
        password = spec.password.get_secret_value() if spec.password else None
        if spec.password_file is not None:
            password = _read(spec.password_file)
        return CertificateCredential(
            spec.tenant_id, spec.client_id, spec.certificate_path, password=password, **options
        )
    if isinstance(spec, WorkloadIdentitySpec):
        return WorkloadIdentityCredential(
            tenant_id=spec.tenant_id, client_id=spec.client_id, token_file_path=spec.token_file_path, **options
        )
    assert isinstance(spec, ManagedIdentitySpec)
    options.pop("authority", None)  # the platform's endpoint, not Entra ID's
    return ManagedIdentityCredential(client_id=spec.client_id, **options)


def _safe_error(name: str, exc: BaseException) -> CredentialError:
    """What went wrong, from codes only: the library's own messages may quote what the endpoint answered."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
    from azure.identity import CredentialUnavailableError

    if isinstance(exc, CredentialUnavailableError):
        return CredentialError(name, "unavailable", "azure-identity found no way to get a token in this environment")
    if isinstance(exc, ClientAuthenticationError):
        message = str(exc.message or "")
        codes = [m.group(1) for m in [_OAUTH_ERROR.search(message)] if m] + _AADSTS.findall(message)[:1]
        status = f"HTTP {exc.status_code}" if exc.status_code else "no HTTP status"
        return CredentialError(name, "refused", " ".join([status, *codes]))
    if isinstance(exc, ServiceRequestError):
        inner = exc.inner_exception or exc.__cause__
        return CredentialError(name, "unreachable", f"token endpoint not reached ({type(inner or exc).__name__})")
    if isinstance(exc, HttpResponseError):
        return CredentialError(name, "unreachable", f"token endpoint answered HTTP {exc.status_code}")
    if isinstance(exc, OSError):
        return CredentialError(
            name, "misconfigured", f"a file could not be read ({exc.strerror or type(exc).__name__})"
        )
    if isinstance(exc, ValueError | TypeError):
        return CredentialError(
            name, "misconfigured", f"azure-identity refused the configuration ({type(exc).__name__})"
        )
    return CredentialError(name, "unreachable", type(exc).__name__)
