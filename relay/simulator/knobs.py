"""Reading the simulator's knobs from JSON or a query string: names in camelCase or snake_case, values as text."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["camel", "check_script", "convert"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"", "none", "null"})


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def check_script(script: list[dict[str, Any]]) -> None:
    if not script or not all(isinstance(step, dict) for step in script):
        raise ValueError("knob script must be a non-empty list of {status, body, headers} objects")
    for step in script:
        try:
            int(step.get("status", 200))
        except (TypeError, ValueError):
            raise ValueError("knob script: every status must be an integer") from None
        if not isinstance(step.get("headers") or {}, dict):
            raise ValueError("knob script: headers must be an object")


def convert(kind: str, raw: Any, name: str) -> Any:
    optional = kind.endswith("| None")
    if optional and (raw is None or (isinstance(raw, str) and raw.strip().lower() in _NONE)):
        return None
    base = kind.removesuffix("| None").strip()
    if base in ("float", "bool"):
        return _scalar(base, raw, name)
    if base == "str":
        if isinstance(raw, str | int | float) and not isinstance(raw, bool):
            return str(raw)
        raise ValueError(f"knob {name} must be a string")
    # script, item_ids: a JSON list, or its text in a query string
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ValueError(f"knob {name} must be JSON") from None
    if not isinstance(raw, list):
        raise ValueError(f"knob {name} must be a list")
    return raw


def _scalar(base: str, raw: Any, name: str) -> float | bool:
    """A float or bool knob: a JSON value, or its text in a query string."""
    if base == "float":
        if isinstance(raw, bool):
            raise ValueError(f"knob {name} must be a number")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"knob {name} must be a number") from None
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"knob {name} must be true or false")
