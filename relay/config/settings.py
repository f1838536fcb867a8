"""Configuration from the environment, read once at the entry point and passed explicitly.

Each setting is one field below: its default, its environment variable (``validation_alias``) and its bounds,
written once. :meth:`Settings.from_env` reads one environment mapping; ``Settings(...)`` takes only its
arguments and the defaults, never the process environment. Bad configuration raises :class:`ConfigError`
whose message is one line naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from relay.config.credentials import CredentialSpec, load_credentials
from relay.config.parsing import (
    ArqRedisURL,
    CommaSeparated,
    ConfigError,
    EnvironmentSource,
    LowercaseHosts,
    RedisURL,
    Schedule,
    Seconds,
    Secrets,
    TenantSecrets,
    config_error,
    is_loopback_host,
    named_tokens,
    tenants_unsigned,
)

__all__ = [
    "DEFAULT_ACTION_HOSTS",
    "DEFAULT_GRAPH_HOSTS",
    "DEFAULT_ITEM_HOSTS",
    "DEFAULT_MONITOR_HOSTS",
    "ConfigError",
    "Settings",
]

#: Microsoft's Graph, OneDrive and SharePoint hosts (commercial and national clouds)
DEFAULT_GRAPH_HOSTS: tuple[str, ...] = (
    "graph.microsoft.com",
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn",
    "api.onedrive.com",
    "*.onedrive.com",
    "*.sharepoint.com",
    "*.sharepoint.us",
    "*.sharepoint.cn",
    "*.sharepoint-df.com",
    "my.microsoftpersonalcontent.com",
    "*.microsoftpersonalcontent.com",
    "*.svc.ms",
)
DEFAULT_MONITOR_HOSTS = DEFAULT_GRAPH_HOSTS
#: where a DriveItem request (and with it a Graph token) may go
DEFAULT_ITEM_HOSTS = DEFAULT_GRAPH_HOSTS
#: where relay may send an action it starts for the app (with the app's Graph token)
DEFAULT_ACTION_HOSTS = DEFAULT_GRAPH_HOSTS


def _console_on_a_tty() -> Literal["json", "console"]:
    try:
        return "console" if os.isatty(2) else "json"
    except OSError:
        return "json"


class Settings(BaseModel):
    """Every setting relay has. Secrets are left out of ``repr`` and out of error messages (``repr=False``)."""

    model_config = ConfigDict(
        frozen=True, validate_by_name=True, hide_input_in_errors=True, extra="forbid", validate_default=True
    )

    redis_url: RedisURL = Field(None, validation_alias="REDIS_URL", repr=False)
    #: arq's queue (DriveItem resolution retries) on a Redis of its own, plain or Sentinel (None: REDIS_URL's);
    #: needed when REDIS_URL is a cluster's, where arq cannot run (docs/operations.md)
    arq_redis_url: ArqRedisURL = Field(None, validation_alias="RELAY_ARQ_REDIS_URL", repr=False)
    host: str = Field("127.0.0.1", validation_alias="RELAY_HOST")
    port: int = Field(8080, ge=0, le=65535, validation_alias="RELAY_PORT")
    api_tokens: CommaSeparated = Field((), validation_alias="RELAY_API_TOKENS", repr=False)
    #: (token, tenant name) for the tokens RELAY_API_TOKENS names (``name:token``): credentials grant by name
    token_names: tuple[tuple[str, str], ...] = Field((), repr=False)
    signing_secrets: Secrets = Field((), validation_alias="RELAY_SIGNING_SECRETS", repr=False)
    #: (tenant name, secret): each tenant's own signing secrets (relay/config/tenants.py)
    tenant_signing_secrets: TenantSecrets = Field((), validation_alias="RELAY_TENANT_SIGNING_SECRETS", repr=False)
    monitor_allowed_hosts: CommaSeparated = Field(
        DEFAULT_MONITOR_HOSTS, min_length=1, validation_alias="RELAY_MONITOR_ALLOWED_HOSTS"
    )
    item_allowed_hosts: CommaSeparated = Field(
        DEFAULT_ITEM_HOSTS, min_length=1, validation_alias="RELAY_ITEM_ALLOWED_HOSTS"
    )
    action_allowed_hosts: CommaSeparated = Field(
        DEFAULT_ACTION_HOSTS, min_length=1, validation_alias="RELAY_ACTION_ALLOWED_HOSTS"
    )
    internal_hosts: LowercaseHosts = Field(
        (),
        validation_alias=AliasChoices("RELAY_INTERNAL_HOSTS", "RELAY_CALLBACK_ALLOWED_HOSTS"),
        description="the hosts monitor, DriveItem and callback requests may reach on internal addresses",
    )
    poll_initial_interval: Seconds = Field(1.0, ge=0.01, validation_alias="RELAY_POLL_INITIAL_INTERVAL")
    poll_max_interval: Seconds = Field(60.0, ge=0.01, validation_alias="RELAY_POLL_MAX_INTERVAL")
    job_timeout: Seconds = Field(259200.0, ge=1, validation_alias="RELAY_JOB_TIMEOUT")
    delivery_schedule: Schedule = Field(
        (0, 5, 300, 1800, 7200, 18000, 36000, 36000), validation_alias="RELAY_DELIVERY_SCHEDULE"
    )
    log_format: Literal["json", "console"] = Field(
        default_factory=_console_on_a_tty, validation_alias="RELAY_LOG_FORMAT"
    )
    access_log: bool = Field(True, validation_alias="RELAY_ACCESS_LOG")
    #: auto: uvloop where it is installed, else asyncio's own loop
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field("auto", validation_alias="RELAY_EVENT_LOOP")
    poll_concurrency: int = Field(200, ge=1, validation_alias="RELAY_POLL_CONCURRENCY")
    delivery_concurrency: int = Field(200, ge=1, validation_alias="RELAY_DELIVERY_CONCURRENCY")
    request_timeout: Seconds = Field(15.0, ge=0.1, validation_alias="RELAY_REQUEST_TIMEOUT")
    #: how long the API waits for a request's head (line and headers), then for its body (slowloris)
    api_read_timeout: Seconds = Field(10.0, ge=0.1, le=300, validation_alias="RELAY_API_READ_TIMEOUT")
    max_invalid_responses: int = Field(5, ge=1, validation_alias="RELAY_POLL_MAX_INVALID")
    poll_max_error_time: Seconds = Field(3600.0, ge=1, validation_alias="RELAY_POLL_MAX_ERROR_TIME")
    job_retention: Seconds = Field(7 * 86400.0, ge=60, validation_alias="RELAY_JOB_RETENTION")
    #: the longest Retry-After a monitor or callback may impose (seconds); not read from the environment
    retry_after_cap: float = 3600.0
    encryption_keys: CommaSeparated = Field((), validation_alias="RELAY_ENCRYPTION_KEY", repr=False)
    worker_metrics_port: int = Field(9100, ge=0, le=65535, validation_alias="RELAY_WORKER_METRICS_PORT")
    #: how long a job whose DriveItem request was refused (401) waits for a PATCHed authorization; 0: no wait
    authorization_wait: Seconds = Field(3600.0, ge=0, validation_alias="RELAY_AUTHORIZATION_WAIT")
    #: the progressInterval of jobs registered without one (seconds); None (0 in the environment): poll as
    #: progress predicts
    progress_interval: Seconds | None = Field(None, validation_alias="RELAY_PROGRESS_INTERVAL")
    #: when set, the API's /metrics answers only requests bearing this token
    metrics_token: str | None = Field(None, validation_alias="RELAY_METRICS_TOKEN", repr=False)
    #: one line per deprecated setting that was used, for the entry point to log
    deprecations: tuple[str, ...] = ()
    #: the named credentials relay holds itself (relay/config/credentials.py)
    credentials: tuple[CredentialSpec, ...] = Field((), validation_alias="RELAY_CREDENTIALS", repr=False)
    #: fair share, per API token (not without tokens: one app on loopback has no one to share with)
    tenant_max_active_jobs: int = Field(100_000, ge=0, validation_alias="RELAY_TENANT_MAX_ACTIVE_JOBS")
    tenant_registrations_per_second: int = Field(500, ge=0, validation_alias="RELAY_TENANT_REGISTRATIONS_PER_SECOND")
    #: open SSE streams, per API process
    tenant_max_streams: int = Field(20, ge=0, validation_alias="RELAY_TENANT_MAX_STREAMS")
    #: jobs that may share one monitor URL at once (0: no limit), whoever registered them
    monitor_max_jobs: int = Field(1000, ge=0, validation_alias="RELAY_MONITOR_MAX_JOBS")
    #: the jobs of a monitor one Redis script reads or writes, about (relay/store/jobs.py CHUNK_JOBS); not read
    #: from the environment (tests lower it)
    monitor_chunk: int = Field(32, ge=1)
    redis_min_replicas: int = Field(0, ge=0, validation_alias="RELAY_REDIS_MIN_REPLICAS")
    redis_wait_timeout: Seconds = Field(1.0, ge=0.001, validation_alias="RELAY_REDIS_WAIT_TIMEOUT")
    #: how long relay serve / worker / dev wait at start for a Redis they cannot reach before exiting (code 2)
    redis_startup_wait: Seconds = Field(10.0, ge=0, validation_alias="RELAY_REDIS_STARTUP_WAIT")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings ``env`` holds (None: ``os.environ``), and nothing else; :class:`ConfigError` when unusable."""
        env = os.environ if env is None else env
        source = EnvironmentSource(cls, env)
        values = source()
        try:
            return cls.model_validate({**values, "deprecations": tuple(source.deprecations)})
        except ValidationError as exc:
            raise config_error(exc, cls, env) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (by field name), validated like any settings."""
        return self.model_validate({**dict(self), **changes})

    @model_validator(mode="before")
    @classmethod
    def _named_tokens(cls, data: Any) -> Any:
        """RELAY_API_TOKENS as text: the names some tokens carry (``name:token``) become ``token_names``."""
        if isinstance(data, dict) and isinstance(raw := data.get("RELAY_API_TOKENS"), str):
            try:
                tokens, names = named_tokens(raw)
            except ValueError as exc:  # the model's own error has no field: name the variable here
                raise ConfigError(f"RELAY_API_TOKENS: {exc}") from None
            return {**data, "RELAY_API_TOKENS": tokens, "token_names": names}
        return data

    @model_validator(mode="after")
    def _tenants_sign_apart(self) -> Settings:
        """Several tenants each sign with their own secrets; the sealing key is never a signing secret."""
        problem = tenants_unsigned(self.api_tokens, self.token_names, self.tenant_signing_secrets)
        if problem:
            raise ConfigError(problem)
        if self.encryption_keys and self.encryption_keys[0].startswith("whsec_"):
            raise ConfigError(
                "RELAY_ENCRYPTION_KEY: its first key seals new values and must not be a signing secret (whsec_...), "
                "which receivers hold: put a new key first; a signing secret after it still opens what it sealed"
            )
        return self

    @field_validator("credentials", mode="before")
    @classmethod
    def _credentials(cls, value: Any) -> Any:
        return load_credentials(value) if isinstance(value, str) else value

    @field_validator("poll_max_interval")
    @classmethod
    def _max_after_initial(cls, value: float, info: ValidationInfo) -> float:
        if value < info.data.get("poll_initial_interval", 0.0):
            raise ValueError("must be >= RELAY_POLL_INITIAL_INTERVAL")
        return value

    @field_validator("progress_interval")
    @classmethod
    def _progress_interval(cls, value: float | None) -> float | None:
        if value and not 1.0 <= value <= 3600.0:
            raise ValueError("must be 0 (off) or 1 to 3600 seconds")
        return value or None

    def check_serving(self) -> None:
        """Refuse an API open to the network without tokens, or one with nothing to seal credentials with."""
        if not self.api_tokens and not is_loopback_host(self.host):
            raise ConfigError(f"RELAY_API_TOKENS must be set when RELAY_HOST={self.host} is not a loopback address")
        self.check_sealing()

    def check_sealing(self) -> None:
        """Refuse to run the API or a worker without a sealing key (never derived from a signing secret)."""
        if not self.encryption_keys:
            raise ConfigError(
                "RELAY_ENCRYPTION_KEY must be set: it seals the Graph tokens, monitor URLs and job secrets relay "
                "stores (relay dev makes one and keeps it)"
            )

    def check_signing(self) -> None:
        """Refuse a worker that would have no secret to sign some tenant's events with."""
        own = {name for name, _ in self.tenant_signing_secrets}
        names = dict(self.token_names)
        if not self.signing_secrets and (not self.api_tokens or any(names.get(t) not in own for t in self.api_tokens)):
            raise ConfigError("RELAY_SIGNING_SECRETS must be set for a worker: every event is signed")

    @property
    def warnings(self) -> tuple[str, ...]:
        """Configuration that works but weakens what tenants are kept from, one line each (never a secret)."""
        sharing: dict[str, set[str]] = {}
        for name, secret in self.tenant_signing_secrets:
            sharing.setdefault(secret, set()).add(name)
        shared = sorted({", ".join(sorted(names)) for names in sharing.values() if len(names) > 1})
        return tuple(
            f"RELAY_TENANT_SIGNING_SECRETS: tenants {names} share a signing secret, so each can forge events the "
            "others' receivers accept: remove it once their receivers have their own"
            for names in shared
        )

    @property
    def vault_keys(self) -> tuple[str, ...]:
        """Key material for sealing what relay stores: RELAY_ENCRYPTION_KEY (the first seals, all open)."""
        return self.encryption_keys

    @property
    def lease(self) -> float:
        """How long a claimed monitor or delivery stays with its worker: one request plus a margin.

        A worker that dies holding a claim delays that member by at most this long.
        """
        return self.request_timeout + 5.0

    def secret_values(self) -> tuple[str, ...]:
        """Every secret this configuration holds, for the logs to keep out of every line (relay/logs.py):
        API and metrics tokens, signing and sealing keys, credential secrets, the Redis password."""
        found: list[str] = [*self.api_tokens, *self.signing_secrets, *self.encryption_keys]
        found += [secret for _, secret in self.tenant_signing_secrets]
        if self.metrics_token:
            found.append(self.metrics_token)
        for spec in self.credentials:
            secret = getattr(spec, "client_secret", None)
            if secret is not None:
                found.append(secret.get_secret_value())
        found += _redis_passwords(self.effective_redis_url)
        found += _redis_passwords(self.arq_redis_url or "")
        return tuple(dict.fromkeys(found))

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or "redis://localhost:6379/0"


def _redis_passwords(url: str) -> list[str]:
    """The password of a Redis URL as written and decoded (and a Sentinel URL's own), for the logs to keep out."""
    rest = url.split("://", 1)[-1]
    authority = rest.rsplit("@", 1)[0] if "@" in rest else ""
    found = [authority, authority.partition(":")[2]] if authority else []
    if ":" in authority:
        found.append(unquote(authority.partition(":")[2]))
    for part in rest.split("?", 1)[1:]:  # sentinel_password=... in the query
        for pair in part.split("&"):
            name, _, value = pair.partition("=")
            if "password" in name.lower() and value:
                found += [value, unquote(value)]
    return [value for value in found if value]
