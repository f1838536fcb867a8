"""JSON on the hot paths: orjson (several times the stdlib's speed), the stdlib where orjson differs.

Writing: orjson refuses lone surrogates in strings and integers over 64 bits, which the stdlib
writes; a non-finite float becomes ``null`` (the stdlib would write ``Infinity``, which is not JSON).
Reading: orjson refuses what the stdlib reads leniently (lone surrogates, ``NaN``, UTF-16) and reads
an integer over 64 bits as a float, losing digits; such texts go to the stdlib, so what relay reads
(and echoes back, like metadata) is exactly what the stdlib would give.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from typing import Any

import orjson

__all__ = [
    "MAX_DEPTH",
    "PEER_MAX_DEPTH",
    "HostileJson",
    "dumps",
    "loads",
    "loads_peer",
    "loads_request",
    "scrub",
    "surrogate_at",
]

#: request bodies nest at most this deep (the body object itself is level 1)
MAX_DEPTH = 32
#: a peer's answer (monitor, DriveItem, action) nests at most this deep: a DriveItem nests 4 or 5 levels
PEER_MAX_DEPTH = 64
#: a lone surrogate in a str (JSON pairs are joined by the parser, so any left are lone): Redis' cjson and
#: orjson refuse them, and UTF-8 cannot carry them
_SURROGATE = re.compile("[\ud800-\udfff]")
#: the escape of a surrogate in JSON text, or a raw one (invalid UTF-8, which the parser refuses anyway)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
#: a string (skipped whole) or a bracket: enough to measure nesting without parsing
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class HostileJson(ValueError):
    """JSON that parses but must not be taken: nested too deep, or a number that is not finite."""


#: every ASCII digit as "0" and every other byte as " ", so that 19 digits in a row (which may be an integer
#: orjson would read as a float) are 19 zeros in a row: two passes in C, ~6x faster than a regex search
_DIGITS_AS_ZEROS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_NINETEEN_DIGITS = b"0" * 19


def _may_hold_long_integer(raw: bytes) -> bool:
    return _NINETEEN_DIGITS in raw.translate(_DIGITS_AS_ZEROS)


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, separators=(",", ":")).encode()


def loads(raw: bytes) -> Any:
    """What ``json.loads(raw)`` gives, raising what it raises."""
    if not _may_hold_long_integer(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def loads_request(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """:func:`loads` for a request body, refusing what no receiver should be sent.

    Raises :class:`HostileJson` for nesting deeper than ``max_depth`` (measured before the stdlib parser,
    which recurses, ever sees it) and for ``NaN``, ``Infinity`` or a number too large for a double;
    ``ValueError`` for text that is not JSON, as :func:`loads` does.
    """
    if not _may_hold_long_integer(raw):
        try:
            value = orjson.loads(raw)  # refuses NaN, infinities and depths over 1024 itself
        except orjson.JSONDecodeError:
            pass
        else:
            # a body with no more brackets than the limit cannot nest deeper: no walk (the common case)
            if raw.count(b"{") + raw.count(b"[") > max_depth:
                _check_depth(value, max_depth)
            return value
    _check_raw_depth(raw, max_depth)
    return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)


def _check_depth(value: Any, limit: int) -> None:
    if not isinstance(value, dict | list):
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            raise HostileJson(f"the JSON nests deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _check_raw_depth(raw: bytes, limit: int) -> None:
    depth = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token in (b"{", b"["):
            depth += 1
            if depth > limit:
                raise HostileJson(f"the JSON nests deeper than {limit} levels")
        elif token in (b"}", b"]"):
            depth -= 1


def _refuse_constant(name: str) -> Any:
    raise HostileJson(f"{name} is not a JSON number receivers can parse")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise HostileJson(f"{text} does not fit a double")
    return number


def scrub(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD: what a peer sent, made storable and sendable."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def loads_peer(raw: bytes, max_depth: int = PEER_MAX_DEPTH) -> Any:
    """A peer's JSON answer as relay can store and resend it; ``ValueError`` (never another exception) for
    what cannot be: text that is not JSON or not UTF-8, nesting deeper than ``max_depth`` (measured before
    the stdlib parser, which recurses, sees it), an integer of more digits than Python reads.

    Unlike :func:`loads`, lone surrogates (``"\\ud800"``) become U+FFFD, in keys and values alike, and
    ``NaN``, ``Infinity`` and numbers beyond a double become ``null``: what a peer sends reaches Redis' cjson
    and receivers, which refuse them.
    """
    if raw.count(b"{") + raw.count(b"[") > max_depth:
        _check_raw_depth(raw, max_depth)
    value: Any = None
    parsed = False
    if not _may_hold_long_integer(raw):
        with contextlib.suppress(orjson.JSONDecodeError):  # it refuses lone surrogates, NaN and infinities itself
            value, parsed = orjson.loads(raw), True
    if not parsed:
        try:
            value = json.loads(raw, parse_constant=_null, parse_float=_finite_or_null)
        except RecursionError:  # not reached after the depth check; kept as a ValueError whatever happens
            raise HostileJson("the JSON nests too deep") from None
        if _SURROGATE_ESCAPE.search(raw):
            value = _scrub_value(value)
    return value


def _null(_: str) -> None:
    return None


def _finite_or_null(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def _scrub_value(value: Any) -> Any:
    """``value`` with every string scrubbed (iterative: the depth was checked, but a stack costs nothing)."""
    if isinstance(value, str):
        return scrub(value)
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]  # (parent, key in parent, node)
    while stack:
        parent, key, node = stack.pop()
        if isinstance(node, dict):
            fresh: dict[str, Any] = {}
            for k, v in node.items():
                fresh[scrub(k)] = v
            parent[key] = fresh
            for k, v in fresh.items():
                if isinstance(v, str):
                    fresh[k] = scrub(v)
                elif isinstance(v, dict | list):
                    stack.append((fresh, k, v))
        else:
            for i, v in enumerate(node):
                if isinstance(v, str):
                    node[i] = scrub(v)
                elif isinstance(v, dict | list):
                    stack.append((node, i, v))
    return root[0]


def surrogate_at(raw: bytes, value: Any) -> str | None:
    """Where ``value`` (parsed from ``raw``) holds a lone surrogate, as a dotted path (``metadata.a.0``), or None.

    Cheap for the common body: ``value`` is walked only when ``raw`` holds a surrogate's escape.
    """
    if not _SURROGATE_ESCAPE.search(raw):
        return None
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return path or "body"
        elif isinstance(node, dict):
            for key, child in node.items():
                where = f"{path}.{key}" if path else str(key)
                if _SURROGATE.search(key):
                    return scrub(where)
                stack.append((where, child))
        elif isinstance(node, list):
            stack.extend((f"{path}.{i}" if path else str(i), child) for i, child in enumerate(node))
    return None
