"""Which Graph requests relay makes with a token: pure checks of the paths they may have, no I/O.

relay holds Graph tokens (the app's ``authorization``, or one from a credential it holds), and sends them
for two things only: to start a long-running action it tracks, and to read the DriveItem that action made.
So an ``action`` is a ``POST`` of one of these, after a drive and on a versioned root (``/v1.0``, ``/beta``,
or SharePoint's ``/_api/v2.0`` and ``/_api/v2.1``):

* a copy: ``.../items/{id}/copy``, ``.../root/copy``, or a path-addressed item ``.../root:/path:/copy``;
* an upload from URL: ``.../items/{id}/children`` (or ``root``, or a path-addressed folder) with the body
  ``{"@microsoft.graph.sourceUrl", "name", "file"}`` and the header ``Prefer: respond-async``.

The drive is ``me/drive``, ``drive``, ``drives/{id}``, ``me/drives/{id}``, or the ``drive``/``drives/{id}``
of ``users/{id}``, ``groups/{id}`` or ``sites/{id}`` (a site also by path: ``sites/{host}:/{path}:``). A
``driveItemUrl`` is a ``GET`` of ``{drive}/items/{resourceId}``, nothing after it.

Paths are judged segment by segment after percent-decoding, as the server reads them: a ``.`` or ``..``
segment (``%2e%2e`` too), an empty one, or one holding ``/``, ``\\`` or a control character is refused,
since it would move the request to another path. Ids a monitor reports (``resourceId``) are checked the
same way and percent-encoded fully before they become a path segment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "ACTION_RULE",
    "ITEM_URL_RULE",
    "MAX_ITEM_ID",
    "UPLOAD_BODY_KEYS",
    "ActionPath",
    "InvalidItemId",
    "action_path",
    "fill_item_url",
    "item_id_problem",
    "item_url_problem",
    "upload_body_problem",
]

#: a DriveItem id longer than this is not one (Graph's are 15-100 characters)
MAX_ITEM_ID = 512
ACTION_RULE = (
    "an action is a POST of a DriveItem copy ({drive}/items/{id}/copy) or an upload from URL "
    "({drive}/items/{id}/children) on /v1.0, /beta or /_api/v2.x"
)
ITEM_URL_RULE = "driveItemUrl is a DriveItem: {drive}/items/{resourceId} on /v1.0, /beta or /_api/v2.x"
#: the body of an upload from URL: the first three are required
UPLOAD_BODY_KEYS = ("@microsoft.graph.sourceUrl", "name", "file", "@microsoft.graph.conflictBehavior", "description")
_VERSIONS = frozenset({"v1.0", "beta"})
_SHAREPOINT_VERSIONS = frozenset({"v2.0", "v2.1"})
_OWNERS = frozenset({"users", "groups", "sites"})
_TEMPLATE = "{resourceId}"


class InvalidItemId(ValueError):
    """A resourceId that cannot be a DriveItem id; the message says why, never repeating the id."""


#: C0 and C1 control characters and DEL (one search instead of a test per character)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _segment_problem(segment: str) -> str | None:
    """Why a decoded path segment (or an id) would not stay one path segment, or None."""
    if segment in (".", ".."):
        return "is '.' or '..'"
    if not segment:
        return "is empty"
    if "/" in segment or "\\" in segment:
        return "holds '/' or '\\'"
    if _CONTROL.search(segment):
        return "holds a control character"
    return None


def item_id_problem(value: str) -> str | None:
    """Why ``value`` is not a DriveItem id relay may put in a path, or None."""
    if len(value) > MAX_ITEM_ID:
        return f"is over {MAX_ITEM_ID} characters"
    return _segment_problem(value)


def fill_item_url(template: str, resource_id: str) -> str:
    """The DriveItem URL for ``resource_id``, fully percent-encoded; :class:`InvalidItemId` if it is no id."""
    problem = item_id_problem(resource_id)
    if problem is not None:
        raise InvalidItemId(f"the resourceId {problem}")
    return template.replace(_TEMPLATE, quote(resource_id, safe=""))


def _segments(url: str) -> tuple[list[str], list[str]] | str:
    """The URL's path segments as written and percent-decoded; or why one would move the request elsewhere."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return "is not a valid URL"
    if not path.startswith("/"):
        return "has no path"
    raw = path[1:].split("/")
    decoded = []
    for written in raw:
        segment = unquote(written)
        problem = _segment_problem(segment)
        if problem is not None:
            return f"has a path segment that {problem}"
        decoded.append(segment)
    return raw, decoded


@dataclass(frozen=True, slots=True)
class ActionPath:
    """An action's path, read: its version root and drive (both as written) and what it does."""

    version: str
    drive: str
    kind: Literal["copy", "upload"]


class _Reader:
    """Reads path segments front to back; each ``take_*`` consumes what it recognises."""

    def __init__(self, segments: list[str]) -> None:
        self.segments = segments
        self.at = 0

    def peek(self, offset: int = 0) -> str | None:
        index = self.at + offset
        return self.segments[index] if index < len(self.segments) else None

    def take(self, *words: str) -> bool:
        if self.peek() in words:
            self.at += 1
            return True
        return False

    def take_id(self) -> bool:
        """One id segment (not a path-addressing ``name:``)."""
        segment = self.peek()
        if segment is None or ":" in segment:
            return False
        self.at += 1
        return True

    def take_addressed_path(self) -> bool:
        """``name:`` + segments, the last ending with ``:`` (``root:/a/b:`` or ``contoso.sharepoint.com:/sites/x:``)."""
        first = self.peek()
        if first is None or not first.endswith(":") or first.count(":") != 1:
            return False
        for offset in range(1, len(self.segments) - self.at):
            segment = self.segments[self.at + offset]
            if segment.endswith(":"):
                self.at += offset + 1
                return True
            if ":" in segment:
                return False
        return False

    def take_version(self) -> bool:
        if self.take(*_VERSIONS):
            return True
        if self.peek() == "_api" and self.peek(1) in _SHAREPOINT_VERSIONS:
            self.at += 2
            return True
        return False

    def take_drive(self) -> bool:
        """``me/drive``, ``drive``, ``drives/{id}``, ``me/drives/{id}``, ``{users|groups|sites}/{id}/drive[s/{id}]``."""
        if self.take("me"):
            return self._drive_of_owner()
        if self.take("drive"):
            return True
        if self.take("drives"):
            return self.take_id()
        if self.take(*_OWNERS):
            site = self.segments[self.at - 1] == "sites"
            return (self.take_id() or (site and self.take_addressed_path())) and self._drive_of_owner()
        return False

    def _drive_of_owner(self) -> bool:
        if self.take("drive"):
            return True
        return self.take("drives") and self.take_id()

    def take_item(self) -> bool:
        """``items/{id}``, ``root``, or a path-addressed item: ``root:/a/b:`` or ``items/{id}:/a/b:``."""
        if self.peek() == "root:":
            return self.take_addressed_path()
        if self.take("root"):
            return True
        if self.take("items"):
            return self.take_id() or self.take_addressed_path()
        return False

    def done(self) -> bool:
        return self.at == len(self.segments)


def action_path(url: str) -> ActionPath | str:
    """What an action URL's path does, or why it is not an action relay sends (the rule)."""
    segments = _segments(url)
    if isinstance(segments, str):
        return f"action.url {segments}"
    raw, decoded = segments
    reader = _Reader(decoded)
    if not reader.take_version():
        return ACTION_RULE
    version_end = reader.at
    if not reader.take_drive():
        return ACTION_RULE
    drive_end = reader.at
    if not reader.take_item() or reader.peek() not in ("copy", "children"):
        return ACTION_RULE
    verb = decoded[reader.at]
    reader.at += 1
    if not reader.done():
        return ACTION_RULE
    return ActionPath(
        version="/" + "/".join(raw[:version_end]),
        drive="/" + "/".join(raw[:drive_end]),
        kind="copy" if verb == "copy" else "upload",
    )


def upload_body_problem(body: Mapping[str, Any] | None, headers: Mapping[str, str] | None) -> tuple[str, str] | None:
    """(field, why) when an upload from URL's body or headers are not that action's, else None."""
    body = body or {}
    unknown = sorted(set(body) - set(UPLOAD_BODY_KEYS))
    source = body.get(UPLOAD_BODY_KEYS[0])
    if (
        unknown
        or not isinstance(source, str)
        or not source.startswith(("http://", "https://"))
        or not isinstance(body.get("name"), str)
        or not body["name"]
        or not isinstance(body.get("file"), dict)
    ):
        return "action.body", (
            "an upload from URL's body is {'@microsoft.graph.sourceUrl': 'http(s)://...', 'name': '...', "
            "'file': {}} (optionally '@microsoft.graph.conflictBehavior', 'description')"
        )
    prefer = next((v for k, v in (headers or {}).items() if k.lower() == "prefer"), "")
    if "respond-async" not in prefer.lower():
        return "action.headers", "an upload from URL needs the header Prefer: respond-async"
    return None


def item_url_problem(template: str) -> str | None:
    """Why a ``driveItemUrl`` template is not a GET of a DriveItem, or None."""
    if template.count(_TEMPLATE) != 1:
        return "driveItemUrl must contain {resourceId} once"
    segments = _segments(template)
    if isinstance(segments, str):
        return f"driveItemUrl {segments}"
    reader = _Reader(segments[1])
    if not (
        reader.take_version()
        and reader.take_drive()
        and reader.take("items")
        and reader.take(_TEMPLATE)
        and reader.done()
    ):
        return ITEM_URL_RULE
    return None
