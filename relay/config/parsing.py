"""How relay's settings read an environment: the value forms, the checks they need, one-line errors.

:class:`relay.config.settings.Settings` declares the fields (each default and variable written there once);
this module holds what they are made of, so that the class reads as the table of settings it is. No pydantic:
the worker, whose only model this was, does not load it (~9 MiB resident, docs/performance.md "Memory"); the
messages are the ones pydantic gave for the same values.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
    "ConfigError",
    "Invalid",
    "Setting",
    "check_arq_redis_url",
    "check_redis_url",
    "check_secret",
    "config_error",
    "is_loopback_host",
    "named_tokens",
    "read_environment",
    "tenant_secrets",
    "tenants_unsigned",
]


class ConfigError(ValueError):
    """A configuration value is unusable; the message is meant to be shown as is."""


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


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


class Invalid(ValueError):
    """A value a setting cannot take: its problems, each ``(item, message)`` (item: the 0-based position in a
    list, or None), in the order found. ``whole``: the message names its variables itself (shown as is)."""

    def __init__(self, *problems: tuple[int | None, str], whole: bool = False) -> None:
        super().__init__(problems[0][1])
        self.problems = problems
        self.whole = whole


#: a setting's form: the value given (text from the environment, or a Python value) to the value held
Parse = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Setting:
    """What a field of :class:`relay.config.settings.Settings` is read from and how (its ``metadata``)."""

    parse: Parse
    #: its variable first, then older names still read (none: not read from the environment)
    variables: tuple[str, ...] = ()
    #: what it is, for the line saying an old name is deprecated
    description: str = ""


_INTEGER = re.compile(r"\s*[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?\s*", re.ASCII)
_BOOLEANS = {
    **dict.fromkeys(("0", "off", "f", "false", "n", "no"), False),
    **dict.fromkeys(("1", "on", "t", "true", "y", "yes"), True),
}


def _bounded(value: float, ge: float | None, le: float | None) -> None:
    if ge is not None and value < ge:
        raise Invalid((None, f"Input should be greater than or equal to {ge}"))
    if le is not None and value > le:
        raise Invalid((None, f"Input should be less than or equal to {le}"))


def integer(ge: int | None = None, le: int | None = None) -> Parse:
    """A whole number (``8080``, ``+80``, ``1_000``, ``80.0``), within ``ge`` / ``le``."""

    def parse(value: Any) -> int:
        if isinstance(value, str):
            if not _INTEGER.fullmatch(value):
                raise Invalid((None, "Input should be a valid integer, unable to parse string as an integer"))
            number = int(value.strip().split(".", 1)[0])
        elif (isinstance(value, float) and value.is_integer()) or isinstance(value, int):
            number = int(value)
        else:
            raise Invalid((None, "Input should be a valid integer"))
        _bounded(number, ge, le)
        return number

    return parse


def _number(value: Any) -> float:
    if isinstance(value, str):
        try:
            if not value.isascii():
                raise ValueError(value)
            number = float(value)
        except ValueError:
            raise Invalid((None, "Input should be a valid number, unable to parse string as a number")) from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise Invalid((None, "Input should be a valid number"))
    if not math.isfinite(number):
        raise Invalid((None, "Input should be a finite number"))
    return number


def seconds(ge: float | None = None, le: float | None = None) -> Parse:
    """A duration: a finite number of seconds, within ``ge`` / ``le``."""

    def parse(value: Any) -> float:
        number = _number(value)
        _bounded(number, ge, le)
        return number

    return parse


def optional(parse: Parse) -> Parse:
    """``parse``, or None for None."""
    return lambda value: None if value is None else parse(value)


def boolean(value: Any) -> bool:
    """``true``/``false``, ``on``/``off``, ``yes``/``no``, ``1``/``0``, ``t``/``f``, ``y``/``n``, any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _BOOLEANS:
        return _BOOLEANS[value.lower()]
    raise Invalid((None, "Input should be a valid boolean, unable to interpret input"))


def one_of(*choices: str) -> Parse:
    quoted = [repr(choice) for choice in choices]
    message = f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"

    def parse(value: Any) -> str:
        if value not in choices:
            raise Invalid((None, message))
        return str(value)

    return parse


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid((None, "Input should be a valid string"))
    return value


def checked(parse: Parse, check: Callable[[Any], Any]) -> Parse:
    """``parse``, then ``check`` (its ValueError's message is the problem; a ConfigError's is shown as is)."""

    def run(value: Any) -> Any:
        parsed = parse(value)
        try:
            return check(parsed)
        except ConfigError as exc:
            raise Invalid((None, str(exc)), whole=True) from None
        except Invalid:
            raise
        except ValueError as exc:
            raise Invalid((None, str(exc))) from None

    return run


def comma_separated(min_length: int = 0) -> Parse:
    """A tuple given in the environment as comma-separated text (``a, b,`` is ``("a", "b")``), never as JSON."""

    def parse(value: Any) -> tuple[str, ...]:
        items = _split(value)
        if not isinstance(items, tuple | list) or not all(isinstance(item, str) for item in items):
            raise Invalid((None, "Input should be a valid tuple"))
        if len(items) < min_length:
            raise Invalid((None, f"Tuple should have at least {min_length} item after validation, not {len(items)}"))
        return tuple(items)

    return parse


def schedule(value: Any) -> tuple[float, ...]:
    """A delay schedule: comma-separated non-negative seconds, at least one (each item's problem its own)."""
    items = _split(value)
    if not isinstance(items, tuple | list):
        raise Invalid((None, "Input should be a valid tuple"))
    delays: list[float] = []
    problems: list[tuple[int | None, str]] = []
    each = seconds(ge=0)
    for index, item in enumerate(items):
        try:
            delays.append(each(item))
        except Invalid as exc:
            problems += [(index, message) for _, message in exc.problems]
    if problems:
        raise Invalid(*problems)
    if not delays:
        raise Invalid((None, "Value should have at least 1 item after validation, not 0"))
    return tuple(delays)


#: Standard Webhooks secrets, comma-separated
secrets = checked(comma_separated(), lambda values: tuple(check_secret(secret) for secret in values))


def lowercase_hosts(value: Any) -> tuple[str, ...]:
    return tuple(host.lower() for host in comma_separated()(value))


def read_environment(
    settings: Mapping[str, Setting], env: Mapping[str, str]
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """The settings one environment mapping holds (the process's, or a test's dict): by field name, the variable
    read and its text; and a line for each old name that was read or ignored.

    A blank variable counts as unset. A setting still read under an old name (``variables`` after the first) is
    read there when its variable is unset, with a line saying so.
    """

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value is not None and value.strip() else None

    values: dict[str, tuple[str, str]] = {}
    deprecations: list[str] = []
    for name, setting in settings.items():
        if not setting.variables:  # not a setting of the environment (derived, or tuning without a variable)
            continue
        variable, *old_names = setting.variables
        value = get(variable)
        for old in old_names:
            if get(old) is None:
                continue
            if value is None:
                value = get(old)
                deprecations.append(f"{old} is deprecated: rename it {variable} ({setting.description})")
            else:
                deprecations.append(f"{old} is ignored: {variable} is set")
        if value is not None:
            values[name] = (variable, value)
    return values, deprecations


def config_error(problems: Iterable[tuple[str, str | None, Invalid]]) -> ConfigError:
    """The first problem as one line naming its variable, with the value when given (``None``: hidden), and how
    many more there are. ``problems``: (the variable or field, the value to show or None, what is wrong)."""
    found = [
        (where, shown, item, message, exc.whole) for where, shown, exc in problems for item, message in exc.problems
    ]
    where, shown, item, message, whole = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    if whole:
        return ConfigError(f"{message}{more}")
    value = f"={shown!r}" if shown is not None else ""
    position = f" (item {item + 1})" if item is not None else ""
    return ConfigError(f"{where}{value}{position}: {message}{more}")
