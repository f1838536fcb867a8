"""Configuration from the environment, read once at the entry point and passed explicitly.

Each setting is one field below: its default, its environment variable and its form (with its bounds),
written once; a plain dataclass (no pydantic: the worker does not load it, docs/performance.md "Memory").
:meth:`Settings.from_env` reads one environment mapping; ``Settings(...)`` takes only its arguments and the
defaults, never the process environment. Bad configuration raises :class:`ConfigError` whose message is one
line naming the variable, as pydantic's were.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

from relay.config.parsing import (
    ConfigError,
    Invalid,
    Parse,
    Setting,
    boolean,
    check_arq_redis_url,
    check_redis_url,
    checked,
    comma_separated,
    config_error,
    integer,
    is_loopback_host,
    lowercase_hosts,
    named_tokens,
    one_of,
    optional,
    read_environment,
    schedule,
    seconds,
    secrets,
    tenant_secrets,
    tenants_unsigned,
    text,
)

if TYPE_CHECKING:
    from relay.config.credentials import CredentialSpec

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


def _setting(
    default: Any,
    variable: str | None,
    parse: Parse,
    *,
    secret: bool = False,
    old: tuple[str, ...] = (),
    description: str = "",
) -> Any:
    """A field of :class:`Settings`: its default, the variable it is read from (and older names), its form."""
    meta = {"setting": Setting(parse, (variable, *old) if variable else (), description)}
    if callable(default):
        return field(default_factory=default, repr=not secret, metadata=meta)
    return field(default=default, repr=not secret, metadata=meta)


def _credentials(value: Any) -> Any:
    if not isinstance(value, str):
        return tuple(value)
    from relay.config.credentials import load_credentials  # pydantic's models: only where credentials are given

    return load_credentials(value)


def _progress_interval(value: float | None) -> float | None:
    if value and not 1.0 <= value <= 3600.0:
        raise ValueError("must be 0 (off) or 1 to 3600 seconds")
    return value or None


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(a), str(b)) for a, b in value)


@dataclass(frozen=True)
class Settings:
    """Every setting relay has. Secrets are left out of ``repr`` and out of error messages.

    ``Settings(...)`` checks its arguments as :meth:`from_env` checks the environment's text (ConfigError, a
    ValueError, naming the field); each field's ``metadata["setting"]`` says where it is read and how.
    """

    redis_url: str | None = _setting(None, "REDIS_URL", optional(checked(text, check_redis_url)), secret=True)
    #: arq's queue (DriveItem resolution retries) on a Redis of its own, plain or Sentinel (None: REDIS_URL's);
    #: needed when REDIS_URL is a cluster's, where arq cannot run (docs/operations.md)
    arq_redis_url: str | None = _setting(
        None, "RELAY_ARQ_REDIS_URL", optional(checked(text, check_arq_redis_url)), secret=True
    )
    host: str = _setting("127.0.0.1", "RELAY_HOST", text)
    port: int = _setting(8080, "RELAY_PORT", integer(ge=0, le=65535))
    api_tokens: tuple[str, ...] = _setting((), "RELAY_API_TOKENS", comma_separated(), secret=True)
    #: (token, tenant name) for the tokens RELAY_API_TOKENS names (``name:token``): credentials grant by name
    token_names: tuple[tuple[str, str], ...] = _setting((), None, _pairs, secret=True)
    signing_secrets: tuple[str, ...] = _setting((), "RELAY_SIGNING_SECRETS", secrets, secret=True)
    #: (tenant name, secret): each tenant's own signing secrets (relay/config/tenants.py)
    tenant_signing_secrets: tuple[tuple[str, str], ...] = _setting(
        (),
        "RELAY_TENANT_SIGNING_SECRETS",
        checked(lambda value: value, lambda v: _pairs(tenant_secrets(v))),
        secret=True,
    )
    monitor_allowed_hosts: tuple[str, ...] = _setting(
        DEFAULT_MONITOR_HOSTS, "RELAY_MONITOR_ALLOWED_HOSTS", comma_separated(min_length=1)
    )
    item_allowed_hosts: tuple[str, ...] = _setting(
        DEFAULT_ITEM_HOSTS, "RELAY_ITEM_ALLOWED_HOSTS", comma_separated(min_length=1)
    )
    action_allowed_hosts: tuple[str, ...] = _setting(
        DEFAULT_ACTION_HOSTS, "RELAY_ACTION_ALLOWED_HOSTS", comma_separated(min_length=1)
    )
    internal_hosts: tuple[str, ...] = _setting(
        (),
        "RELAY_INTERNAL_HOSTS",
        lowercase_hosts,
        old=("RELAY_CALLBACK_ALLOWED_HOSTS",),
        description="the hosts monitor, DriveItem and callback requests may reach on internal addresses",
    )
    poll_initial_interval: float = _setting(1.0, "RELAY_POLL_INITIAL_INTERVAL", seconds(ge=0.01))
    poll_max_interval: float = _setting(60.0, "RELAY_POLL_MAX_INTERVAL", seconds(ge=0.01))
    job_timeout: float = _setting(259200.0, "RELAY_JOB_TIMEOUT", seconds(ge=1))
    delivery_schedule: tuple[float, ...] = _setting(
        (0, 5, 300, 1800, 7200, 18000, 36000, 36000), "RELAY_DELIVERY_SCHEDULE", schedule
    )
    log_format: Literal["json", "console"] = _setting(_console_on_a_tty, "RELAY_LOG_FORMAT", one_of("json", "console"))
    access_log: bool = _setting(True, "RELAY_ACCESS_LOG", boolean)
    #: auto: uvloop where it is installed, else asyncio's own loop
    event_loop: Literal["auto", "uvloop", "asyncio"] = _setting(
        "auto", "RELAY_EVENT_LOOP", one_of("auto", "uvloop", "asyncio")
    )
    poll_concurrency: int = _setting(200, "RELAY_POLL_CONCURRENCY", integer(ge=1))
    delivery_concurrency: int = _setting(200, "RELAY_DELIVERY_CONCURRENCY", integer(ge=1))
    request_timeout: float = _setting(15.0, "RELAY_REQUEST_TIMEOUT", seconds(ge=0.1))
    #: how long the API waits for a request's head (line and headers), then for its body (slowloris)
    api_read_timeout: float = _setting(10.0, "RELAY_API_READ_TIMEOUT", seconds(ge=0.1, le=300))
    max_invalid_responses: int = _setting(5, "RELAY_POLL_MAX_INVALID", integer(ge=1))
    poll_max_error_time: float = _setting(3600.0, "RELAY_POLL_MAX_ERROR_TIME", seconds(ge=1))
    job_retention: float = _setting(7 * 86400.0, "RELAY_JOB_RETENTION", seconds(ge=60))
    #: dead letters kept listed and counted (relay:dead, and each owner's): the oldest beyond are dropped; 0: no bound
    dead_letters_max: int = _setting(100_000, "RELAY_DEAD_LETTERS_MAX", integer(ge=0))
    #: the longest Retry-After a monitor or callback may impose (seconds); not read from the environment
    retry_after_cap: float = _setting(3600.0, None, seconds())
    encryption_keys: tuple[str, ...] = _setting((), "RELAY_ENCRYPTION_KEY", comma_separated(), secret=True)
    worker_metrics_port: int = _setting(9100, "RELAY_WORKER_METRICS_PORT", integer(ge=0, le=65535))
    #: how long a job whose DriveItem request was refused (401) waits for a PATCHed authorization; 0: no wait
    authorization_wait: float = _setting(3600.0, "RELAY_AUTHORIZATION_WAIT", seconds(ge=0))
    #: the progressInterval of jobs registered without one (seconds); None (0 in the environment): poll as
    #: progress predicts
    progress_interval: float | None = _setting(
        None, "RELAY_PROGRESS_INTERVAL", optional(checked(seconds(), _progress_interval))
    )
    #: when set, the API's /metrics answers only requests bearing this token
    metrics_token: str | None = _setting(None, "RELAY_METRICS_TOKEN", optional(text), secret=True)
    #: one line per deprecated setting that was used, for the entry point to log
    deprecations: tuple[str, ...] = _setting((), None, comma_separated())
    #: the named credentials relay holds itself (relay/config/credentials.py)
    credentials: tuple[CredentialSpec, ...] = _setting(
        (), "RELAY_CREDENTIALS", checked(lambda value: value, _credentials), secret=True
    )
    #: fair share, per API token (not without tokens: one app on loopback has no one to share with)
    tenant_max_active_jobs: int = _setting(100_000, "RELAY_TENANT_MAX_ACTIVE_JOBS", integer(ge=0))
    tenant_registrations_per_second: int = _setting(500, "RELAY_TENANT_REGISTRATIONS_PER_SECOND", integer(ge=0))
    #: open SSE streams, per API process
    tenant_max_streams: int = _setting(20, "RELAY_TENANT_MAX_STREAMS", integer(ge=0))
    #: jobs that may share one monitor URL at once (0: no limit), whoever registered them
    monitor_max_jobs: int = _setting(1000, "RELAY_MONITOR_MAX_JOBS", integer(ge=0))
    #: the jobs of a monitor one Redis script reads or writes, about (relay/store/jobs.py CHUNK_JOBS); not read
    #: from the environment (tests lower it)
    monitor_chunk: int = _setting(32, None, integer(ge=1))
    redis_min_replicas: int = _setting(0, "RELAY_REDIS_MIN_REPLICAS", integer(ge=0))
    redis_wait_timeout: float = _setting(1.0, "RELAY_REDIS_WAIT_TIMEOUT", seconds(ge=0.001))
    #: how long relay serve / worker / dev wait at start for a Redis they cannot reach before exiting (code 2)
    redis_startup_wait: float = _setting(10.0, "RELAY_REDIS_STARTUP_WAIT", seconds(ge=0))
    #: write what versions before 2026-12-07 read: a job's renamed fields under their earlier names, sealed values
    #: with base64 padding (a rolling upgrade: docs/operations.md)
    store_legacy_format: bool = _setting(False, "RELAY_STORE_LEGACY_FORMAT", boolean)

    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """Each field's name and how it is read (its variables first)."""
        return {f.name: f.metadata["setting"] for f in dataclasses.fields(cls)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings ``env`` holds (None: ``os.environ``), and nothing else; :class:`ConfigError` when unusable."""
        env = os.environ if env is None else env
        read, deprecations = read_environment(cls.settings(), env)
        given: dict[str, Any] = {name: value for name, (_, value) in read.items()}
        if "api_tokens" in given:  # the names some tokens carry (``name:token``) become ``token_names``
            try:
                given["api_tokens"], given["token_names"] = named_tokens(given["api_tokens"])
            except ValueError as exc:
                raise ConfigError(f"RELAY_API_TOKENS: {exc}") from None
        shown = {
            name: value if cls.__dataclass_fields__[name].repr and env.get(variable) == value else None
            for name, (variable, value) in read.items()
        }
        names = {name: variable for name, (variable, _) in read.items()}
        for name, setting in cls.settings().items():
            if setting.variables:
                names.setdefault(name, setting.variables[0])
        values = _checked({**given, "deprecations": tuple(deprecations)}, names, shown)
        return cls(**values)

    def __post_init__(self) -> None:
        values = _checked({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, {}, {})
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (by field name), checked like any settings."""
        unknown = sorted(set(changes) - set(self.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"{', '.join(unknown)}: no such setting")
        return dataclasses.replace(self, **changes)

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


def _checked(given: Mapping[str, Any], names: Mapping[str, str], shown: Mapping[str, str | None]) -> dict[str, Any]:
    """Each field's value from ``given`` (else its default) in its form, then the checks across fields.

    A field's problem names its variable (``names``; else the field) and shows ``shown``'s text for it (secrets
    never). Every field is checked, in order, so the one line says how many more problems there are.
    """
    values: dict[str, Any] = {}
    problems: list[tuple[str, str | None, Invalid]] = []
    for f in dataclasses.fields(Settings):
        if f.name in given:
            value = given[f.name]
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = f.default
        setting: Setting = f.metadata["setting"]
        try:
            values[f.name] = setting.parse(value)
            if f.name == "poll_max_interval" and values[f.name] < values.get("poll_initial_interval", 0.0):
                raise Invalid((None, "must be >= RELAY_POLL_INITIAL_INTERVAL"))
        except Invalid as exc:
            values.pop(f.name, None)
            problems.append((names.get(f.name, f.name), shown.get(f.name), exc))
    if problems:
        raise config_error(problems)
    problem = tenants_unsigned(values["api_tokens"], values["token_names"], values["tenant_signing_secrets"])
    if problem:
        raise ConfigError(problem)
    if values["encryption_keys"] and values["encryption_keys"][0].startswith("whsec_"):
        raise ConfigError(
            "RELAY_ENCRYPTION_KEY: its first key seals new values and must not be a signing secret (whsec_...), "
            "which receivers hold: put a new key first; a signing secret after it still opens what it sealed"
        )
    return values


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
