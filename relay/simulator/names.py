"""Graph's ``@microsoft.graph.conflictBehavior``: what a copy or upload does when its name is taken.

The driveItem copy documents (v1.0 and beta) define three values: ``fail`` (the default: the action is
refused with ``nameAlreadyExists``), ``replace`` (the old file is replaced; a *folder* in conflict falls back
to ``fail``, and then the operation is accepted and fails on its monitor: beta example 5) and ``rename`` ("appends
the lowest integer that guarantees uniqueness to the name"). The simulator keeps the names its actions created
per destination and compares them only when the request carries the parameter, so that tests starting many
copies with the same body keep working.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["CONFLICT_BEHAVIORS", "Claim", "Names", "behavior_of"]

CONFLICT_BEHAVIORS = ("fail", "replace", "rename")
_PARAMETER = "@microsoft.graph.conflictBehavior"


def behavior_of(values: dict[str, Any]) -> str | None:
    """Take the parameter out of a request's knobs (the query string, or an upload's body); ValueError if bad."""
    raw = values.pop(_PARAMETER, None)
    if raw is None:
        return None
    behavior = str(raw)
    if behavior not in CONFLICT_BEHAVIORS:
        raise ValueError(f"{_PARAMETER} must be one of {', '.join(CONFLICT_BEHAVIORS)}, not {behavior!r}")
    return behavior


@dataclass(frozen=True, slots=True)
class Claim:
    """What a name claim decided: the name the new item gets, and whether the action is refused or fails."""

    name: str
    refused: bool = False  # 409 nameAlreadyExists
    fails: bool = False  # accepted, then the monitor reports the conflict (a folder under "replace")


def is_file(name: str) -> bool:
    stem, dot, extension = name.rpartition(".")
    return bool(dot and stem and extension)


def _numbered(name: str, n: int) -> str:
    """``report.docx`` → ``report 1.docx``; ``Folder`` → ``Folder 1``."""
    if is_file(name):
        stem, _, extension = name.rpartition(".")
        return f"{stem} {n}.{extension}"
    return f"{name} {n}"


class Names:
    """The names taken in each destination folder."""

    def __init__(self) -> None:
        self._taken: dict[str, set[str]] = {}

    @staticmethod
    def destination(parent: dict[str, Any] | None, source: str) -> str:
        """A key for the destination folder: its parentReference, else the source item's own folder."""
        if parent:
            return json.dumps({k: parent.get(k) for k in ("driveId", "id", "path")}, sort_keys=True)
        return f"parent-of:{source}"

    def claim(self, destination: str, name: str, behavior: str | None) -> Claim:
        taken = self._taken.setdefault(destination, set())
        if behavior is None or name.lower() not in {t.lower() for t in taken}:
            taken.add(name)
            return Claim(name)
        if behavior == "fail":
            return Claim(name, refused=True)
        if behavior == "replace":
            return Claim(name, fails=not is_file(name))
        n = 1
        while _numbered(name, n).lower() in {t.lower() for t in taken}:
            n += 1
        taken.add(_numbered(name, n))
        return Claim(_numbered(name, n))
