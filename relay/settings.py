"""Configuration from the environment, read once at the entry point and passed explicitly.

Bad configuration raises :class:`ConfigError` whose message is one line naming the variable.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from standardwebhooks.webhooks import Webhook

if TYPE_CHECKING:
    from relay.credentials.specs import CredentialSpec
from relay.store.redis_url import PLAIN_SCHEMES, SENTINEL_SCHEMES, is_sentinel_url, parse_sentinel_url

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
DEFAULT_DELIVERY_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


class ConfigError(ValueError):
    """A configuration value is unusable; the message is meant to be shown as is."""


def _list(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _duration(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name}={raw!r} must be a finite number of seconds >= {minimum:g}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be 'on' or 'off'")


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    api_tokens: tuple[str, ...] = ()
    #: (token, tenant name) for the tokens RELAY_API_TOKENS names (``name:token``): credentials grant by name
    token_names: tuple[tuple[str, str], ...] = ()
    signing_secrets: tuple[str, ...] = ()
    monitor_allowed_hosts: tuple[str, ...] = DEFAULT_MONITOR_HOSTS
    item_allowed_hosts: tuple[str, ...] = DEFAULT_ITEM_HOSTS
    action_allowed_hosts: tuple[str, ...] = DEFAULT_ACTION_HOSTS
    #: hosts relay may reach although they are (or resolve to) loopback/private addresses: callbacks, monitors, items
    internal_hosts: tuple[str, ...] = ()
    poll_initial_interval: float = 1.0
    poll_max_interval: float = 60.0
    job_timeout: float = 259200.0
    delivery_schedule: tuple[float, ...] = DEFAULT_DELIVERY_SCHEDULE
    log_format: str = "json"
    access_log: bool = True
    # not named by the SPEC: tuning with sensible defaults
    poll_concurrency: int = 200
    delivery_concurrency: int = 200
    request_timeout: float = 15.0
    max_invalid_responses: int = 5
    poll_max_error_time: float = 3600.0
    job_retention: float = 7 * 86400.0
    retry_after_cap: float = 3600.0
    encryption_keys: tuple[str, ...] = ()
    worker_metrics_port: int = 9100
    #: how long a job whose DriveItem request was refused (401) waits for a PATCHed authorization; 0: no wait
    authorization_wait: float = 3600.0
    #: the progressInterval of jobs registered without one (seconds); None: poll as progress predicts
    progress_interval: float | None = None
    #: when set, the API's /metrics answers only requests bearing this token
    metrics_token: str | None = None
    #: one line per deprecated setting that was used, for the entry point to log
    deprecations: tuple[str, ...] = ()
    #: RELAY_CREDENTIALS: the named credentials relay holds itself (relay/credential_specs.py)
    credentials: tuple[CredentialSpec, ...] = ()
    #: fair share, per API token (not without tokens: one app on loopback has no one to share with)
    tenant_max_active_jobs: int = 100_000
    tenant_registrations_per_second: int = 500
    tenant_max_streams: int = 20  # open SSE streams, per API process
    redis_min_replicas: int = 0
    redis_wait_timeout: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        from relay.credentials.specs import load_credentials  # it needs ConfigError from this module

        env = os.environ if env is None else env
        port = _int(env, "RELAY_PORT", 8080, minimum=0)
        if port > 65535:
            raise ConfigError(f"RELAY_PORT={port} is not a TCP port")
        secrets = _list(env.get("RELAY_SIGNING_SECRETS"))
        for secret in secrets:
            check_secret(secret, "RELAY_SIGNING_SECRETS")
        schedule_raw = env.get("RELAY_DELIVERY_SCHEDULE")
        schedule = DEFAULT_DELIVERY_SCHEDULE
        if schedule_raw:
            try:
                schedule = tuple(float(part) for part in _list(schedule_raw))
            except ValueError:
                raise ConfigError(f"RELAY_DELIVERY_SCHEDULE={schedule_raw!r} must be comma-separated seconds") from None
            if not schedule or any(not math.isfinite(d) or d < 0 for d in schedule):
                raise ConfigError(f"RELAY_DELIVERY_SCHEDULE={schedule_raw!r} must be non-negative seconds")
        initial = _duration(env, "RELAY_POLL_INITIAL_INTERVAL", 1.0, minimum=0.01)
        maximum = _duration(env, "RELAY_POLL_MAX_INTERVAL", 60.0, minimum=0.01)
        if maximum < initial:
            raise ConfigError("RELAY_POLL_MAX_INTERVAL must be >= RELAY_POLL_INITIAL_INTERVAL")
        log_format = env.get("RELAY_LOG_FORMAT") or ("console" if _stderr_is_tty() else "json")
        if log_format not in ("json", "console"):
            raise ConfigError(f"RELAY_LOG_FORMAT={log_format!r} must be 'json' or 'console'")
        internal, deprecations = _internal_hosts(env)
        tokens = _api_tokens(env.get("RELAY_API_TOKENS"))
        redis_url = env.get("REDIS_URL") or None
        if redis_url:
            check_redis_url(redis_url)
        return cls(
            redis_url=redis_url,
            host=env.get("RELAY_HOST") or "127.0.0.1",
            port=port,
            api_tokens=tuple(token for token, _ in tokens),
            token_names=tuple((token, name) for token, name in tokens if name is not None),
            signing_secrets=secrets,
            monitor_allowed_hosts=_list(env.get("RELAY_MONITOR_ALLOWED_HOSTS")) or DEFAULT_MONITOR_HOSTS,
            item_allowed_hosts=_list(env.get("RELAY_ITEM_ALLOWED_HOSTS")) or DEFAULT_ITEM_HOSTS,
            action_allowed_hosts=_list(env.get("RELAY_ACTION_ALLOWED_HOSTS")) or DEFAULT_ACTION_HOSTS,
            internal_hosts=internal,
            poll_initial_interval=initial,
            poll_max_interval=maximum,
            job_timeout=_duration(env, "RELAY_JOB_TIMEOUT", 259200.0, minimum=1),
            delivery_schedule=schedule,
            log_format=log_format,
            access_log=_switch(env, "RELAY_ACCESS_LOG", True),
            poll_concurrency=_int(env, "RELAY_POLL_CONCURRENCY", 200),
            delivery_concurrency=_int(env, "RELAY_DELIVERY_CONCURRENCY", 200),
            request_timeout=_duration(env, "RELAY_REQUEST_TIMEOUT", 15.0, minimum=0.1),
            max_invalid_responses=_int(env, "RELAY_POLL_MAX_INVALID", 5),
            poll_max_error_time=_duration(env, "RELAY_POLL_MAX_ERROR_TIME", 3600.0, minimum=1),
            job_retention=_duration(env, "RELAY_JOB_RETENTION", 7 * 86400.0, minimum=60),
            encryption_keys=_list(env.get("RELAY_ENCRYPTION_KEY")),
            worker_metrics_port=_int(env, "RELAY_WORKER_METRICS_PORT", 9100, minimum=0),
            authorization_wait=_duration(env, "RELAY_AUTHORIZATION_WAIT", 3600.0),
            metrics_token=env.get("RELAY_METRICS_TOKEN") or None,
            progress_interval=_progress_interval(env),
            deprecations=deprecations,
            credentials=load_credentials(env.get("RELAY_CREDENTIALS")),
            tenant_max_active_jobs=_int(env, "RELAY_TENANT_MAX_ACTIVE_JOBS", 100_000, minimum=0),
            tenant_registrations_per_second=_int(env, "RELAY_TENANT_REGISTRATIONS_PER_SECOND", 500, minimum=0),
            tenant_max_streams=_int(env, "RELAY_TENANT_MAX_STREAMS", 20, minimum=0),
            redis_min_replicas=_int(env, "RELAY_REDIS_MIN_REPLICAS", 0, minimum=0),
            redis_wait_timeout=_duration(env, "RELAY_REDIS_WAIT_TIMEOUT", 1.0, minimum=0.001),
        )

    def check_serving(self) -> None:
        """Refuse an API open to the network without tokens."""
        if not self.api_tokens and not is_loopback_host(self.host):
            raise ConfigError(f"RELAY_API_TOKENS must be set when RELAY_HOST={self.host} is not a loopback address")

    @property
    def vault_keys(self) -> tuple[str, ...]:
        """Key material for encrypting stored credentials: explicit keys, else the signing secrets."""
        return self.encryption_keys or self.signing_secrets

    @property
    def lease(self) -> float:
        """How long a claimed monitor or delivery stays with its worker: one request plus a margin.

        A worker that dies holding a claim delays that member by at most this long.
        """
        return self.request_timeout + 5.0

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or "redis://localhost:6379/0"


_TENANT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _api_tokens(raw: str | None) -> list[tuple[str, str | None]]:
    """RELAY_API_TOKENS: comma-separated tokens, each optionally named ``name:token`` (the tenant's name)."""
    out: list[tuple[str, str | None]] = []
    for entry in _list(raw):
        name, sep, token = entry.partition(":")
        if sep and _TENANT_NAME.match(name) and token:
            out.append((token, name))
        elif sep:
            raise ConfigError("RELAY_API_TOKENS: a named token is name:token, the name 1-64 letters, digits, . _ -")
        else:
            out.append((entry, None))
    return out


def _progress_interval(env: Mapping[str, str]) -> float | None:
    value = _duration(env, "RELAY_PROGRESS_INTERVAL", 0.0)
    if value and not 1.0 <= value <= 3600.0:
        raise ConfigError(f"RELAY_PROGRESS_INTERVAL={value:g} must be 0 (off) or 1 to 3600 seconds")
    return value or None


def _internal_hosts(env: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """RELAY_INTERNAL_HOSTS, or its old name RELAY_CALLBACK_ALLOWED_HOSTS (still read, with a deprecation line)."""
    raw = env.get("RELAY_INTERNAL_HOSTS")
    deprecations: tuple[str, ...] = ()
    old = env.get("RELAY_CALLBACK_ALLOWED_HOSTS")
    if old is not None:
        if raw is None:
            raw = old
            deprecations = (
                "RELAY_CALLBACK_ALLOWED_HOSTS is deprecated: it names the hosts monitor, DriveItem and callback "
                "requests may reach on internal addresses; rename it RELAY_INTERNAL_HOSTS",
            )
        else:
            deprecations = ("RELAY_CALLBACK_ALLOWED_HOSTS is ignored: RELAY_INTERNAL_HOSTS is set",)
    return tuple(h.lower() for h in _list(raw)), deprecations


def check_redis_url(url: str) -> None:
    """A plain Redis URL or a Sentinel URL (store/redis_url.py); no message repeats it (it may hold a password)."""
    if is_sentinel_url(url):
        try:
            parse_sentinel_url(url)
        except ValueError as exc:
            raise ConfigError(f"REDIS_URL: {exc}") from None
        return
    if not url.startswith(tuple(f"{scheme}://" for scheme in PLAIN_SCHEMES)):
        schemes = ", ".join(f"{scheme}://" for scheme in (*PLAIN_SCHEMES, *SENTINEL_SCHEMES))
        raise ConfigError(f"REDIS_URL must start with one of {schemes}")


def check_secret(secret: str, name: str) -> None:
    if not secret.startswith("whsec_"):
        raise ConfigError(f"{name}: every secret must start with 'whsec_'")
    try:
        Webhook(secret)
    except Exception:
        raise ConfigError(f"{name}: a secret is not valid base64 after 'whsec_'") from None


def _stderr_is_tty() -> bool:
    try:
        return os.isatty(2)
    except OSError:
        return False
