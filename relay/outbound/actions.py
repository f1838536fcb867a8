"""Starting the long-running action for the app: relay POSTs it to Graph and takes the 202's ``Location``.

Every Graph SDK types ``copy`` as returning a DriveItem, so the 202's ``Location`` header (the monitor URL)
is dropped and apps must dig it out. With ``action`` in ``POST /v1/jobs``, relay sends the request itself:
to an allowed Graph host only (``RELAY_ACTION_ALLOWED_HOSTS``), through the SSRF guard, never following a
redirect, with the app's authorization and a short list of safe extra headers; and only when it is one of the
long-running actions relay tracks (a DriveItem copy, an upload from URL: :mod:`relay.core.graph_paths`), since
the token it carries may be an app-only one. What Graph answers decides:

* ``202`` with ``Location``: the monitor to track, as if the app had registered it;
* ``200``/``201`` with a DriveItem: the action finished synchronously (some SharePoint copies do);
* a 4xx: Graph's refusal, passed on as a problem (``nameAlreadyExists`` and the like; a throttled ``429`` with
  Graph's ``Retry-After``, rounded up to whole seconds as HTTP writes it);
* a ``503``: a 503 problem with Graph's ``Retry-After``; another 5xx, a timeout, a redirect or an unusable
  answer: a 502/504 problem. Nothing is registered then.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from yarl import URL

from relay.core import jsonfast
from relay.core.backoff import parse_retry_after
from relay.core.graph_error import GraphError, graph_error
from relay.core.graph_paths import ActionPath, action_path, item_id_problem, upload_body_problem
from relay.core.hosts import host_matches, host_name_problem
from relay.outbound.client import fetch
from relay.outbound.ssrf import Blocked

__all__ = [
    "SAFE_HEADERS",
    "Action",
    "ActionRefused",
    "Started",
    "derived_item_url",
    "has_control_character",
    "start_action",
]

#: extra request headers an action may carry; everything else (Authorization included) relay sets itself
SAFE_HEADERS = frozenset({"prefer", "if-match", "if-none-match", "accept-language"})
_MAX_ANSWER = 1024 * 1024
#: what no header value may hold: C0 controls (CR, LF, NUL...) and DEL
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def has_control_character(value: str) -> bool:
    """Whether ``value`` holds a character no HTTP header value may carry (aiohttp refuses CR, LF and NUL)."""
    return _CONTROL.search(value) is not None


#: what a drive id keeps unencoded in a derived driveItemUrl (``b!...`` ids stay readable)
_ID_SAFE = "!$&'()*+,;=@"


class Action(BaseModel):
    """``action`` of ``POST /v1/jobs``: the Graph request that starts the long-running action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["POST"] = "POST"
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="a DriveItem copy ({drive}/items/{id}/copy) or upload from URL ({drive}/items/{id}/children)",
        json_schema_extra={"format": "uri"},
    )
    body: dict[str, Any] | None = Field(
        default=None, description="JSON body of the request, e.g. the copy's", validate_default=True
    )
    headers: dict[str, str] | None = Field(
        default=None,
        description=f"extra headers, only {', '.join(sorted(SAFE_HEADERS))} (e.g. Prefer: respond-async)",
        validate_default=True,
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            url = URL(value)
            url.host  # noqa: B018  decoded lazily: an xn-- label that is not IDNA raises here
        except ValueError:
            raise PydanticCustomError("url", "action.url is not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise PydanticCustomError("url", "action.url must be an absolute http(s) URL")
        problem = host_name_problem(url.host)
        if problem is not None:
            raise PydanticCustomError("url", "action.url: {problem}", {"problem": problem})
        read = action_path(value)
        if isinstance(read, str):  # the token goes only to the actions relay tracks
            raise PydanticCustomError("action", "{rule}", {"rule": read})
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        parent = (value or {}).get("parentReference")
        drive_id = parent.get("driveId") if isinstance(parent, dict) else None
        if isinstance(drive_id, str) and (problem := item_id_problem(drive_id)) is not None:
            raise PydanticCustomError("action", "parentReference.driveId {problem}", {"problem": problem})
        read = action_path(info.data["url"]) if "url" in info.data else None
        if isinstance(read, ActionPath) and read.kind == "upload":
            wrong = upload_body_problem(value, None)
            if wrong is not None and wrong[0] == "action.body":
                raise PydanticCustomError("action", "{rule}", {"rule": wrong[1]})
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        read = action_path(info.data["url"]) if "url" in info.data else None
        if isinstance(read, ActionPath) and read.kind == "upload" and "body" in info.data:
            wrong = upload_body_problem(info.data["body"], value)
            if wrong is not None:
                raise PydanticCustomError("action", "{rule}", {"rule": wrong[1]})
        for name, header in (value or {}).items():
            if name.lower() not in SAFE_HEADERS:
                raise PydanticCustomError(
                    "header", "action.headers may carry only {allowed}", {"allowed": ", ".join(sorted(SAFE_HEADERS))}
                )
            if has_control_character(header) or len(header) > 1024:
                raise PydanticCustomError(
                    "header",
                    "action header values are one line of at most 1024 characters, without control characters "
                    "(U+0000-U+001F, U+007F)",
                )
        return value


@dataclass(frozen=True, slots=True)
class Started:
    """What Graph answered an action that it took: a monitor to track, or the finished item itself."""

    http_status: int
    monitor_url: str | None = None
    drive_item: dict[str, Any] | None = None


class ActionRefused(Exception):
    """Graph did not start the action (or relay could not tell): the API answers this problem."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        graph: dict[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.graph = graph
        self.retry_after = retry_after

    def headers(self) -> dict[str, str] | None:
        """``Retry-After`` in whole seconds (HTTP's delta-seconds), when Graph asked for a wait."""
        return None if self.retry_after is None else {"Retry-After": str(math.ceil(self.retry_after))}


def derived_item_url(action: Action) -> str | None:
    """The ``driveItemUrl`` the new item will have: in the action's drive, or its ``parentReference.driveId``."""
    read = action_path(action.url)
    if not isinstance(read, ActionPath):
        return None
    parent = (action.body or {}).get("parentReference")
    drive = read.drive
    if isinstance(parent, dict) and isinstance(parent.get("driveId"), str):
        drive = f"{read.version}/drives/{quote(parent['driveId'], safe=_ID_SAFE)}"
    return str(URL(action.url).with_path(drive, encoded=True).with_query(None)) + "/items/{resourceId}"


async def start_action(
    session: aiohttp.ClientSession,
    action: Action,
    authorization: str,
    *,
    internal_hosts: tuple[str, ...],
    time_limit: float,
) -> Started:
    """Send the action; raises :class:`ActionRefused` for anything but a started or finished action."""
    headers = {**(action.headers or {}), "Authorization": authorization, "Accept": "application/json"}
    data = None
    if action.body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(action.body).encode()
    try:
        resp = await fetch(
            session,
            action.method,
            action.url,
            trusted_hosts=internal_hosts,
            time_limit=time_limit,
            max_body=_MAX_ANSWER,
            headers=headers,
            data=data,
        )
    except Blocked as exc:
        raise ActionRefused(422, "Action not allowed", str(exc)) from None
    except TimeoutError:
        raise ActionRefused(504, "Graph did not answer", f"no answer within {time_limit:g} s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ActionRefused(502, "Graph not reachable", type(exc).__name__) from None
    answer = _json_object(resp.body)
    if resp.status == 202:
        return Started(202, monitor_url=_monitor_url(action, resp.headers.get("Location")))
    if resp.status in (200, 201) and answer is not None and isinstance(answer.get("id"), str):
        return Started(resp.status, drive_item=answer)
    if 300 <= resp.status < 400:
        raise ActionRefused(502, "Graph redirected the action", f"answered {resp.status}; relay follows no redirect")
    error = graph_error(answer)
    message = (error.message if error else None) or f"Graph answered {resp.status}"
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    graph = _graph_fields(resp.status, error, message, retry_after)
    if 400 <= resp.status < 500:
        # Graph's own status, except an authentication failure, which must not read as relay's own 401
        status = 422 if resp.status in (401, 407) else resp.status
        raise ActionRefused(status, "Graph refused the action", message, graph, retry_after=retry_after)
    if resp.status == 503:  # Graph is unavailable or throttling: nothing started, try again after its wait
        raise ActionRefused(503, "Graph unavailable", message, graph, retry_after=retry_after)
    raise ActionRefused(502, "Graph failed the action", f"Graph answered {resp.status}", graph, retry_after=retry_after)


def _monitor_url(action: Action, location: str | None) -> str:
    """The monitor URL a 202 gives, or :class:`ActionRefused`: a Location that is missing, not UTF-8 (aiohttp reads
    such bytes as lone surrogates) or whose host is no DNS name is Graph's fault, not a crash of relay's."""
    if not location:
        raise ActionRefused(502, "No monitor URL", "Graph answered 202 without a Location header")
    try:
        if jsonfast.scrub(location) != location:
            raise ValueError("not UTF-8")
        monitor_url = str(URL(action.url).join(URL(location)))
        if host_name_problem(URL(monitor_url).host) is not None:
            raise ValueError("no DNS name")
    except ValueError:
        raise ActionRefused(502, "No monitor URL", "Graph answered 202 with a Location that is not a URL") from None
    return monitor_url


def _graph_fields(status: int, error: GraphError | None, message: str, retry_after: float | None) -> dict[str, Any]:
    """``graphError`` of the problem: Graph's status, its error object's members, its Retry-After in seconds."""
    fields: dict[str, Any] = {"status": status, "code": error.code if error else None, "message": message}
    if error is not None:
        fields.update(error.extras())
    if retry_after is not None:
        fields["retryAfter"] = retry_after
    return fields


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = jsonfast.loads_peer(body) if body else None  # what relay cannot store is scrubbed or refused
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def action_host_allowed(action: Action, hosts: tuple[str, ...]) -> bool:
    return host_matches(URL(action.url).host or "", hosts)
