"""How relay's settings read an environment: comma-separated values, the checks they need, one-line errors.

:class:`relay.config.settings.Settings` declares the fields (each default and variable written there once);
this module holds what it is made of, so that the model reads as the table of settings it is.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from standardwebhooks.webhooks import Webhook

from relay.config.redis_url import (
    CLUSTER_SCHEMES,
    PLAIN_SCHEMES,
    SENTINEL_SCHEMES,
    is_cluster_url,
    is_sentinel_url,
    parse_cluster_url,
    parse_sentinel_url,
    plain_url_problem,
)

__all__ = [
    "ArqRedisURL",
    "CommaSeparated",
    "ConfigError",
    "EnvironmentSource",
    "LowercaseHosts",
    "RedisURL",
    "Schedule",
    "Seconds",
    "Secrets",
    "TenantSecrets",
    "check_arq_redis_url",
    "check_redis_url",
    "check_secret",
    "config_error",
    "is_loopback_host",
    "named_tokens",
    "tenant_secrets",
    "tenants_unsigned",
    "variables",
]


class ConfigError(ValueError):
    """A configuration value is unusable; the message is meant to be shown as is."""


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


#: a tuple given in the environment as comma-separated text (``a, b,`` is ``("a", "b")``), never as JSON
CommaSeparated = Annotated[tuple[str, ...], BeforeValidator(_split)]
#: a duration: a finite number of seconds (each field sets its own minimum)
Seconds = Annotated[float, Field(allow_inf_nan=False)]
#: a delay schedule: comma-separated non-negative seconds, at least one
Schedule = Annotated[tuple[Annotated[Seconds, Field(ge=0)], ...], BeforeValidator(_split), Field(min_length=1)]


def check_secret(secret: str) -> str:
    """A Standard Webhooks secret (``whsec_`` and base64); ValueError says what is wrong, never the secret."""
    if not secret.startswith("whsec_"):
        raise ValueError("every secret must start with 'whsec_'")
    try:
        Webhook(secret)
    except Exception:
        raise ValueError("a secret is not valid base64 after 'whsec_'") from None
    return secret


def check_redis_url(url: str | None) -> str | None:
    """A plain Redis URL, a Sentinel URL or a Cluster URL (redis_url.py); no message repeats it (it may hold a
    password)."""
    if url is not None and is_cluster_url(url):
        parse_cluster_url(url)  # its ValueError names the part that is wrong, not the URL
        return url
    if url is None or is_sentinel_url(url):
        if url is not None:
            parse_sentinel_url(url)  # its ValueError names the part that is wrong, not the URL
        return url
    if not url.startswith(tuple(f"{scheme}://" for scheme in PLAIN_SCHEMES)):
        schemes = ", ".join(f"{scheme}://" for scheme in (*PLAIN_SCHEMES, *SENTINEL_SCHEMES, *CLUSTER_SCHEMES))
        raise ValueError(f"must start with one of {schemes}")
    problem = plain_url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


def check_arq_redis_url(url: str | None) -> str | None:
    """RELAY_ARQ_REDIS_URL: a plain or Sentinel URL (arq needs one Redis, not a cluster); no message repeats it."""
    if url is not None and is_cluster_url(url):
        raise ValueError("arq needs one Redis: a plain or Sentinel URL, not a cluster's")
    if url is not None and not url.startswith(tuple(f"{s}://" for s in (*PLAIN_SCHEMES, *SENTINEL_SCHEMES))):
        schemes = ", ".join(f"{scheme}://" for scheme in (*PLAIN_SCHEMES, *SENTINEL_SCHEMES))
        raise ValueError(f"must start with one of {schemes}")
    return check_redis_url(url)


Secrets = Annotated[CommaSeparated, AfterValidator(lambda secrets: tuple(check_secret(s) for s in secrets))]
RedisURL = Annotated[str | None, AfterValidator(check_redis_url)]
ArqRedisURL = Annotated[str | None, AfterValidator(check_arq_redis_url)]
LowercaseHosts = Annotated[CommaSeparated, AfterValidator(lambda hosts: tuple(h.lower() for h in hosts))]


_TENANT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def named_tokens(raw: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """RELAY_API_TOKENS' comma-separated tokens, each optionally named ``name:token`` (the tenant's name):
    the tokens, and (token, name) for the named ones."""
    tokens: list[str] = []
    names: list[tuple[str, str]] = []
    for entry in _split(raw):
        name, sep, token = entry.partition(":")
        if not sep:
            tokens.append(entry)
        elif _TENANT_NAME.match(name) and token:
            tokens.append(token)
            names.append((token, name))
        else:
            raise ValueError("a named token is name:token, the name 1-64 letters, digits, . _ -")
    return tuple(tokens), tuple(names)


def tenant_secrets(value: Any) -> Any:
    """RELAY_TENANT_SIGNING_SECRETS: comma-separated ``name:whsec_...``, a name once per secret it signs with (its
    first is current); ValueError says what is wrong, never a secret."""
    if not isinstance(value, str):
        return value
    pairs: list[tuple[str, str]] = []
    for entry in _split(value):
        name, sep, secret = entry.partition(":")
        if not sep or not _TENANT_NAME.match(name.strip()):
            raise ValueError("each entry is name:whsec_..., the name a tenant's in RELAY_API_TOKENS")
        pairs.append((name.strip(), check_secret(secret.strip())))
    return tuple(pairs)


#: (tenant name, signing secret), in the order given
TenantSecrets = Annotated[tuple[tuple[str, str], ...], BeforeValidator(tenant_secrets)]


def tenants_unsigned(
    tokens: tuple[str, ...], names: tuple[tuple[str, str], ...], secrets: tuple[tuple[str, str], ...]
) -> str | None:
    """Why these tenants cannot each sign with secrets of their own (one line), or None when they can.

    Every named tenant must be one a token has. With several tenants (an unnamed token is one of its own)
    every token needs a name and every name secrets of its own; one tenant may sign with RELAY_SIGNING_SECRETS.
    """
    named = dict(names)
    tenants = {named.get(token, f"\0{token}") for token in tokens}
    strangers = sorted({name for name, _ in secrets} - set(named.values()))
    if strangers:
        return f"RELAY_TENANT_SIGNING_SECRETS names {', '.join(strangers)}: no token in RELAY_API_TOKENS has that name"
    if len(tenants) < 2:
        return None
    if any(token not in named for token in tokens):
        return (
            "RELAY_API_TOKENS: with several tenants every token needs its tenant's name (name:token), by which "
            "RELAY_TENANT_SIGNING_SECRETS gives it its own signing secrets"
        )
    missing = sorted(tenants - {name for name, _ in secrets})
    if missing:
        return (
            f"RELAY_TENANT_SIGNING_SECRETS has no secret for {', '.join(missing)}: with several tenants each signs "
            "with its own (a shared RELAY_SIGNING_SECRETS would let each forge the others' events)"
        )
    return None


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def variables(field: FieldInfo) -> list[str]:
    """The names a field is read under: its variable first, then older names still read."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return [alias] if isinstance(alias, str) else []


class EnvironmentSource:
    """The settings one environment mapping holds (the process's, or a test's dict), keyed by variable.

    A blank variable counts as unset. A field whose ``validation_alias`` is ``AliasChoices(new, old...)``
    is still read under an old name, and :attr:`deprecations` gets a line saying so.
    """

    def __init__(self, settings_cls: type[BaseModel], env: Mapping[str, str]) -> None:
        self.settings_cls = settings_cls
        self.env = env
        self.deprecations: list[str] = []

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        names = variables(field)
        if not names:  # not a setting of the environment (derived, or tuning without a variable)
            return None, field_name, False
        variable, *old_names = names
        value = self._get(variable)
        for old in old_names:
            if self._get(old) is None:
                continue
            if value is None:
                value = self._get(old)
                self.deprecations.append(f"{old} is deprecated: rename it {variable} ({field.description})")
            else:
                self.deprecations.append(f"{old} is ignored: {variable} is set")
        return value, variable, False

    def _get(self, name: str) -> str | None:
        value = self.env.get(name)
        return value if value is not None and value.strip() else None

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, variable, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[variable] = value
        return values


def config_error(exc: ValidationError, settings_cls: type[BaseModel], env: Mapping[str, str]) -> ConfigError:
    """The first problem as one line naming its variable, with the value unless the field hides it (repr=False)."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    cause = first.get("ctx", {}).get("error")
    message = str(cause) if isinstance(cause, Exception) else first["msg"]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if isinstance(cause, ConfigError) or not first["loc"]:  # the message names its variables itself
        return ConfigError(f"{message}{more}")
    variable, *where = first["loc"]
    field = next((f for f in settings_cls.model_fields.values() if str(variable) in variables(f)), None)
    shown = f"={env[str(variable)]!r}" if field is not None and field.repr and str(variable) in env else ""
    item = f" (item {int(where[0]) + 1})" if where and isinstance(where[0], int) else ""
    return ConfigError(f"{variable}{shown}{item}: {message}{more}")
