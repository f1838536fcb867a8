"""A Microsoft Graph long-running-action simulator: a real aiohttp server behaving like the seed documents.

Copy and upload-from-URL requests answer ``202 Accepted`` with a monitor URL in ``Location``. The
monitor needs no credentials (and refuses them); it reports progress, then completes in one of the
forms seen in the wild: ``303 See Other`` (OneDrive), the Graph beta ``202``/``200`` ``completed``
body, or OneDrive for Business's ``200`` with the finished DriveItem itself. The item endpoint
requires the bearer token. Knobs (:class:`SimOptions`) add what real monitors do to their pollers:
failures, ``notStarted`` for a long time, progress stuck at 0, monitors deleted after completion,
throttling with or without ``Retry-After``, 5xx (sometimes with a valid status body), junk HTML,
SharePoint-hosted monitor URLs carrying ``tempauth`` in their query, or a fixed script of answers.

``relay simulate`` runs it standalone (:func:`run_simulator`) for users' own integration tests;
``/sim/...`` control endpoints create operations and read counters over HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from relay.simtokens import TokenIssuer

__all__ = [
    "ACTION_ANSWERS",
    "COMPLETIONS",
    "MONITOR_STYLES",
    "OUTCOMES",
    "SimOperation",
    "SimOptions",
    "Simulator",
    "run_simulator",
]

COMPLETIONS = ("303", "303-bare", "beta202", "beta200", "item200")
"""How a successful completion is reported on the monitor (:attr:`SimOptions.completion`)."""
OUTCOMES = ("completed", "failed", "deleteFailed", "cancelled")
"""Terminal status of an operation at the end of its duration (:attr:`SimOptions.outcome`)."""
MONITOR_STYLES = ("onedrive", "sharepoint")
"""Shapes of monitor URL (:attr:`SimOptions.monitor_style`)."""
ACTION_ANSWERS = ("202", "sync", "conflict", "redirect")
"""How the action request is answered (:attr:`SimOptions.answer`)."""

_RESOURCE_ALPHABET = string.ascii_uppercase + string.digits
_DRIVE_ID = "b!Sim5ulatedDr1ve-kXd9JpQ0bN2cVtY7wL4aZe8RgU3fHs6iOmT"
# A failure stops part way: the failed body reports less than the last progress, which pollers must survive.
_FAILED_AT = 60.0
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"", "none", "null"})


@dataclass
class SimOptions:
    """Knobs of one simulated operation; every field has a default.

    ``name`` is an addition: the name of the resulting DriveItem (the copy/upload request body's
    ``name`` sets it). Invalid values raise :class:`ValueError`.
    """

    duration: float = 5.0
    """Seconds from creation to completion; progress is linear in between."""
    operation: str = "ItemCopy"
    """The ``operation`` field of status bodies (``ItemCopy``, ``UploadFromUrl``...)."""
    completion: str = "303"
    """``303`` | ``303-bare`` | ``beta202`` | ``beta200`` | ``item200`` (see :data:`COMPLETIONS`)."""
    always200: bool = False
    """Answer 200 instead of 202 while running (OneDrive for Business)."""
    outcome: str = "completed"
    """``completed`` | ``failed`` | ``deleteFailed`` | ``cancelled``: the terminal status."""
    error_code: str = "AccessDenied_CopyFailed"
    """``errorCode`` of a failed body."""
    status_description: str = "Copy failed: access denied"
    """``statusDescription`` of a failed body."""
    not_started_for: float = 0.0
    """The first seconds report ``notStarted`` with ``percentageComplete`` 0."""
    stuck: bool = False
    """``percentageComplete`` stays 0 while running."""
    gone_after: float | None = None
    """Seconds after completion when the monitor starts answering 404 (None: never)."""
    rate_429: float = 0.0
    """Probability that a poll is answered 429."""
    retry_after: str | None = "1"
    """``Retry-After`` of 429/503 answers (seconds or an HTTP date); None: no header."""
    rate_503: float = 0.0
    """Probability of a 503."""
    rate_500: float = 0.0
    """Probability of a 500 with a plain-text body."""
    status_on_500: bool = False
    """A 500's body is nevertheless a valid AsyncJobStatus of the current state."""
    junk: bool = False
    """Every poll answers 200 ``text/html`` junk."""
    latency: float = 0.0
    """Seconds to wait before answering each poll."""
    monitor_style: str = "onedrive"
    """``onedrive``: ``{base}/monitor/{id}``;
    ``sharepoint``: ``{base}/_api/v2.0/drives/{d}/operations/{id}?tempauth=...`` (no ``monitor`` segment, a secret)."""
    script: list[dict[str, Any]] | None = None
    """Overrides everything else: poll n answers ``script[min(n, len - 1)]``, each ``{"status", "body", "headers"}``."""
    item_ids: list[str] | None = None
    """More resource ids the item endpoint answers with this operation's DriveItem (a scripted completion that
    names its item only in a ``Location`` or ``resourceLocation``)."""
    name: str = "Copy of LargeFolder1"
    """Name of the resulting DriveItem."""
    answer: str = "202"
    """How the action request itself is answered: ``202`` (a monitor), ``sync`` (201 with the new DriveItem at
    once, as some SharePoint copies do), ``conflict`` (409 ``nameAlreadyExists``), ``redirect`` (302 elsewhere)."""

    def __post_init__(self) -> None:
        for knob, value, allowed in (
            ("completion", self.completion, COMPLETIONS),
            ("outcome", self.outcome, OUTCOMES),
            ("monitor_style", self.monitor_style, MONITOR_STYLES),
            ("answer", self.answer, ACTION_ANSWERS),
        ):
            if value not in allowed:
                raise ValueError(f"knob {knob} must be one of {', '.join(allowed)}, not {value!r}")
        for knob in ("duration", "not_started_for", "latency", "gone_after"):
            amount = getattr(self, knob)
            if amount is not None and not amount >= 0:
                raise ValueError(f"knob {knob} must be a number >= 0")
        for knob in ("rate_429", "rate_503", "rate_500"):
            if not 0.0 <= getattr(self, knob) <= 1.0:
                raise ValueError(f"knob {knob} must be a probability between 0 and 1")
        if self.script is not None:
            if not self.script or not all(isinstance(step, dict) for step in self.script):
                raise ValueError("knob script must be a non-empty list of {status, body, headers} objects")
            for step in self.script:
                try:
                    int(step.get("status", 200))
                except (TypeError, ValueError):
                    raise ValueError("knob script: every status must be an integer") from None
                if not isinstance(step.get("headers") or {}, dict):
                    raise ValueError("knob script: headers must be an object")
        if self.item_ids is not None and not all(isinstance(i, str) and i for i in self.item_ids):
            raise ValueError("knob itemIds must be a list of non-empty strings")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SimOptions:
        """Knobs from JSON or a query string, camelCase or snake_case; strings are converted to the field type."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        camel = {_camel(name): name for name in known}
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            name = key if key in known else camel.get(key)
            if name is None:
                raise ValueError(f"unknown knob {key!r}")
            kwargs[name] = _convert(str(known[name].type), raw, name)
        return cls(**kwargs)

    def to_json(self) -> dict[str, Any]:
        """The knobs in camelCase, as the control endpoints show them."""
        return {_camel(key): value for key, value in dataclasses.asdict(self).items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _convert(kind: str, raw: Any, name: str) -> Any:
    optional = kind.endswith("| None")
    if optional and (raw is None or (isinstance(raw, str) and raw.strip().lower() in _NONE)):
        return None
    base = kind.removesuffix("| None").strip()
    if base == "float":
        if isinstance(raw, bool):
            raise ValueError(f"knob {name} must be a number")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"knob {name} must be a number") from None
    if base == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"knob {name} must be true or false")
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


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class SimOperation:
    """One simulated long-running action and what its monitor has seen."""

    id: str
    resource_id: str
    options: SimOptions
    created: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` at creation; the state is computed from the time elapsed since."""
    polls: int = 0
    """Monitor GETs received, including refused ones (credentials, wrong tempauth)."""
    monitor_url: str = ""
    base_url: str = ""
    """Origin of the URLs this operation hands out (monitor, 303 ``Location``)."""
    deleted: bool = False
    """Set by ``DELETE /sim/operations/{id}``: the monitor answers 404 from then on."""
    tempauth: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    parent_reference: dict[str, Any] = field(
        default_factory=lambda: {"driveId": _DRIVE_ID, "driveType": "business", "path": "/drive/root:/Documents"}
    )
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def elapsed(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.created

    def is_complete(self, now: float | None = None) -> bool:
        """Whether the operation has finished successfully (its item exists)."""
        opts = self.options
        return opts.outcome == "completed" and self.elapsed(now) >= opts.duration

    def drive_item(self) -> dict[str, Any]:
        """The DriveItem this operation produces."""
        opts = self.options
        modified = self.created_at + timedelta(seconds=opts.duration)
        item: dict[str, Any] = {
            "id": self.resource_id,
            "name": opts.name,
            "size": 12019,
            "createdDateTime": _iso(self.created_at),
            "lastModifiedDateTime": _iso(modified),
            "webUrl": f"https://contoso-my.sharepoint.com/personal/me_contoso_com/Documents/{opts.name}",
            "parentReference": dict(self.parent_reference),
        }
        if opts.operation == "UploadFromUrl":
            item["file"] = {"mimeType": "application/octet-stream"}
        else:
            item["folder"] = {"childCount": 12}
        return item

    def status_body(self, now: float | None = None) -> dict[str, Any] | None:
        """The AsyncJobStatus of the current state, whatever the completion form (None when gone)."""
        opts = self.options
        elapsed = self.elapsed(now)
        if self.deleted or (opts.gone_after is not None and elapsed >= opts.duration + opts.gone_after):
            return None
        if elapsed < opts.duration:
            if elapsed < opts.not_started_for:
                return self._body("notStarted", 0.0)
            pct = 0.0 if opts.stuck or opts.duration <= 0 else min(99.9, 100.0 * elapsed / opts.duration)
            return self._body("inProgress", pct)
        if opts.outcome != "completed":
            body = self._body(opts.outcome, 0.0 if opts.stuck else _FAILED_AT)
            body.update(errorCode=opts.error_code, statusDescription=opts.status_description)
            return body
        return {"percentageComplete": 100.0, "resourceId": self.resource_id, "status": "completed"}  # as the seeds show

    def state(self, now: float | None = None) -> tuple[int, dict[str, str], Any]:
        """The fault-free monitor answer at ``now``: (HTTP status, headers, JSON body or None for no body).

        For a scripted operation: the step the latest poll got (the first before any poll).
        """
        opts = self.options
        gone: tuple[int, dict[str, str], Any] = (
            404,
            {},
            {"error": {"code": "itemNotFound", "message": "The monitor no longer exists."}},
        )
        if self.deleted:
            return gone
        if opts.script:
            step = opts.script[min(max(self.polls - 1, 0), len(opts.script) - 1)]
            return int(step.get("status", 200)), dict(step.get("headers") or {}), step.get("body")
        body = self.status_body(now)
        if body is None:
            return gone
        running = 200 if opts.always200 else 202
        if body["status"] != "completed":
            return running, {}, body
        location = {"Location": f"{self.base_url}/v1.0/me/drive/items/{self.resource_id}"}
        if opts.completion == "303":
            return 303, location, body
        if opts.completion == "303-bare":
            return 303, location, None
        if opts.completion == "beta202":
            return 202, {}, body
        if opts.completion == "beta200":
            return 200, {}, body
        return 200, {}, self.drive_item()  # item200

    def _body(self, status: str, pct: float) -> dict[str, Any]:
        return {"operation": self.options.operation, "percentageComplete": round(pct, 1), "status": status}


class Simulator:
    """The simulated Graph endpoints, the monitors and the control API, as one aiohttp application."""

    def __init__(
        self,
        *,
        token: str = "sim-token",  # noqa: S107  # a simulator
        seed: int | None = None,
        token_ttl: float | None = None,
    ) -> None:
        """``token_ttl``: seconds the fixed ``token`` lives (from now), and issued tokens' default; None: forever."""
        self.token = token
        self.tokens = TokenIssuer(token, ttl=token_ttl)
        self.base_url = ""
        self.operations: dict[str, SimOperation] = {}
        self.actions = 0
        """Copy and upload requests that started an operation."""
        self.item_requests = 0
        """GETs of the item endpoint, authorized or not."""
        self.item_auth_headers: list[str] = []
        """The ``Authorization`` header of every item GET, in order ("" when absent)."""
        self._faults = random.Random(seed)
        self._ids = random.Random(seed)
        self._by_resource: dict[str, SimOperation] = {}
        self._runner: web.AppRunner | None = None

    @property
    def total_polls(self) -> int:
        """Monitor GETs across all operations."""
        return sum(op.polls for op in self.operations.values())

    def create(self, options: SimOptions | None = None, **knobs: Any) -> SimOperation:
        """A new operation; ``knobs`` are :class:`SimOptions` fields (applied on top of ``options``)."""
        opts = dataclasses.replace(options, **knobs) if options is not None else SimOptions(**knobs)
        return self._create(opts, self.base_url)

    def _create(self, opts: SimOptions, base_url: str, parent: dict[str, Any] | None = None) -> SimOperation:
        op_id = str(uuid.uuid4()).upper()
        resource_id = "01" + "".join(self._ids.choice(_RESOURCE_ALPHABET) for _ in range(32))
        op = SimOperation(op_id, resource_id, opts, base_url=base_url)
        if parent:
            op.parent_reference.update(parent)
        if opts.monitor_style == "sharepoint":
            op.monitor_url = f"{base_url}/_api/v2.0/drives/{_DRIVE_ID}/operations/{op_id}?tempauth={op.tempauth}"
        else:
            op.monitor_url = f"{base_url}/monitor/{op_id}"
        self.operations[op_id] = op
        self._by_resource[resource_id] = op
        for step in opts.script or ():  # a scripted completion's resourceId resolves to this operation's item
            body = step.get("body")
            if isinstance(body, dict) and isinstance(body.get("resourceId"), str):
                self._by_resource.setdefault(body["resourceId"], op)
        for item_id in opts.item_ids or ():
            self._by_resource.setdefault(item_id, op)
        return op

    # -- helpers --------------------------------------------------------------------------------

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Graph's 401 for a missing, unknown or expired token; None when the token is live."""
        message = self.tokens.refusal(request.headers.get("Authorization", ""))
        if message is None:
            return None
        return self._graph_error(
            401,
            "InvalidAuthenticationToken",
            message,
            inner={"date": _iso(datetime.now(UTC)), "request-id": str(uuid.uuid4())},
            headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
        )

    @staticmethod
    def _graph_error(
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        inner: dict[str, str] | None = None,
    ) -> web.Response:
        error: dict[str, Any] = {"code": code, "message": message}
        if inner:
            error["innerError"] = inner
        return web.json_response({"error": error}, status=status, headers=headers)

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        text = await request.text()
        if not text.strip():
            return {}
        try:
            body = json.loads(text)
        except ValueError:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": {"code": "invalidRequest", "message": "Malformed JSON body."}}),
                content_type="application/json",
            ) from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": {"code": "invalidRequest", "message": "The body must be a JSON object."}}),
                content_type="application/json",
            )
        return body

    def _start_action(self, request: web.Request, body: dict[str, Any], **defaults: Any) -> web.Response:
        """Create the operation asked for (knobs in the query string) and answer 202 with the monitor URL."""
        values: dict[str, Any] = dict(defaults)
        if isinstance(body.get("name"), str):
            values["name"] = body["name"]
        values.update(request.query)
        try:
            opts = SimOptions.from_mapping(values)
        except (TypeError, ValueError) as exc:
            return self._graph_error(400, "invalidRequest", str(exc))
        if opts.answer == "conflict":
            return self._graph_error(409, "nameAlreadyExists", "The specified item name already exists.")
        if opts.answer == "redirect":
            return web.Response(status=302, headers={"Location": "http://169.254.169.254/latest/meta-data"})
        parent = body.get("parentReference")
        self.actions += 1
        op = self._create(opts, f"{request.scheme}://{request.host}", parent if isinstance(parent, dict) else None)
        if opts.answer == "sync":
            op.created -= opts.duration  # done already: its item exists and the item endpoint serves it
            op.created_at -= timedelta(seconds=opts.duration)
            return web.json_response(op.drive_item(), status=201)
        return web.Response(status=202, headers={"Location": op.monitor_url})

    # -- Graph endpoints ------------------------------------------------------------------------

    async def _copy(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        return self._start_action(request, await self._json_body(request))

    async def _children(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        body = await self._json_body(request)
        if "@microsoft.graph.sourceUrl" not in body:
            return self._graph_error(400, "invalidRequest", "Only upload from URL is simulated on /children.")
        if "respond-async" not in request.headers.get("Prefer", ""):
            return self._graph_error(
                400, "invalidRequest", "Upload from URL requires the header Prefer: respond-async."
            )
        return self._start_action(request, body, operation="UploadFromUrl")

    async def _item(self, request: web.Request) -> web.Response:
        self.item_requests += 1
        self.item_auth_headers.append(request.headers.get("Authorization", ""))
        if (refused := self._refusal(request)) is not None:
            return refused
        op = self._by_resource.get(request.match_info["item_id"])
        if op is None or not (op.options.script or op.options.item_ids or op.is_complete()):
            return self._graph_error(404, "itemNotFound", "The resource could not be found.")
        item = op.drive_item()
        item["id"] = request.match_info["item_id"]
        return web.json_response(item)

    # -- monitor --------------------------------------------------------------------------------

    async def _monitor(self, request: web.Request) -> web.StreamResponse:
        op = self.operations.get(request.match_info["op_id"].upper())
        sharepoint = "drive_id" in request.match_info
        if op is None or (op.options.monitor_style == "sharepoint") != sharepoint:
            return self._graph_error(404, "itemNotFound", "The monitor does not exist.")
        op.polls += 1
        if "Authorization" in request.headers:
            return self._graph_error(400, "invalidRequest", "monitor requests must not carry credentials")
        if sharepoint and not secrets.compare_digest(request.query.get("tempauth", ""), op.tempauth):
            return self._graph_error(401, "unauthenticated", "The tempauth token is missing or invalid.")
        opts = op.options
        if opts.latency:
            await asyncio.sleep(opts.latency)
        if op.deleted or opts.script:
            return _respond(*op.state())
        if opts.junk:
            return web.Response(status=200, text="<html>junk</html>", content_type="text/html")
        fault = self._fault(op)
        if fault is not None:
            return fault
        return _respond(*op.state())

    def _fault(self, op: SimOperation) -> web.Response | None:
        """One draw per poll: 429, 503, 500 or nothing, with the configured probabilities."""
        opts = op.options
        draw = self._faults.random()
        retry = {"Retry-After": opts.retry_after} if opts.retry_after is not None else {}
        if draw < opts.rate_429:
            return self._graph_error(429, "activityLimitReached", "The app or user has been throttled.", headers=retry)
        draw -= opts.rate_429
        if draw < opts.rate_503:
            return web.Response(status=503, headers=retry, text="Service Unavailable")
        draw -= opts.rate_503
        if draw < opts.rate_500:
            body = op.status_body() if opts.status_on_500 else None
            if body is not None:
                return web.json_response(body, status=500)
            return web.Response(status=500, text="Internal Server Error")
        return None

    # -- control --------------------------------------------------------------------------------

    async def _control_create(self, request: web.Request) -> web.Response:
        try:
            opts = SimOptions.from_mapping(await self._json_body(request))
        except (TypeError, ValueError) as exc:
            return self._graph_error(400, "invalidRequest", str(exc))
        op = self._create(opts, self.base_url or f"{request.scheme}://{request.host}")
        return web.json_response({"id": op.id, "monitorUrl": op.monitor_url, "resourceId": op.resource_id}, status=201)

    def _control_op(self, request: web.Request) -> SimOperation:
        op = self.operations.get(request.match_info["op_id"].upper())
        if op is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": {"code": "itemNotFound", "message": "No such operation."}}),
                content_type="application/json",
            )
        return op

    async def _control_get(self, request: web.Request) -> web.Response:
        op = self._control_op(request)
        current = op.status_body()
        return web.json_response(
            {
                "id": op.id,
                "resourceId": op.resource_id,
                "monitorUrl": op.monitor_url,
                "polls": op.polls,
                "deleted": op.deleted,
                "status": None if current is None else current["status"],
                "percentageComplete": None if current is None else current["percentageComplete"],
                "options": op.options.to_json(),
            }
        )

    async def _control_delete(self, request: web.Request) -> web.Response:
        self._control_op(request).deleted = True
        return web.Response(status=204)

    async def _token_issue(self, request: web.Request) -> web.Response:
        """``POST /sim/tokens`` (optional ``{"ttl": seconds}``): a fresh token, as an OAuth token endpoint answers."""
        body = await self._json_body(request)
        ttl = body.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl >= 0):
            return self._graph_error(400, "invalidRequest", "ttl must be a number of seconds >= 0")
        token, expires = self.tokens.issue(None if ttl is None else float(ttl))
        answer: dict[str, Any] = {"token_type": "Bearer", "access_token": token}
        if expires is not None:
            answer["expires_in"] = max(0, round(expires - time.time()))
        return web.json_response(answer, status=201)

    async def _token_expire(self, _: web.Request) -> web.Response:
        """``DELETE /sim/tokens``: every token so far expires now (a copy that outlived its token, without the wait)."""
        self.tokens.expire_all()
        return web.Response(status=204)

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"operations": len(self.operations), "polls": self.total_polls, "itemRequests": self.item_requests}
        )

    # -- server ---------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application (also usable with aiohttp's test utilities)."""
        app = web.Application()
        prefixes = (
            "/v1.0/me/drive",
            "/beta/me/drive",
            "/v1.0/drives/{graph_drive_id}",
            "/beta/drives/{graph_drive_id}",
        )
        for prefix in prefixes:
            app.router.add_post(prefix + "/items/{item_id}/copy", self._copy)
            app.router.add_post(prefix + "/items/{item_id}/children", self._children)
            app.router.add_get(prefix + "/items/{item_id:[^/]+}", self._item)  # an id may hold braces
        app.router.add_get("/monitor/{op_id}", self._monitor)
        app.router.add_get("/_api/v2.0/drives/{drive_id}/operations/{op_id}", self._monitor)
        app.router.add_post("/sim/operations", self._control_create)
        app.router.add_get("/sim/operations/{op_id}", self._control_get)
        app.router.add_delete("/sim/operations/{op_id}", self._control_delete)
        app.router.add_get("/sim/stats", self._stats)
        app.router.add_post("/sim/tokens", self._token_issue)
        app.router.add_delete("/sim/tokens", self._token_expire)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port); sets and returns :attr:`base_url`."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        if bound_host in ("0.0.0.0", "::"):  # noqa: S104  # an unspecified address is not a URL host
            bound_host = "127.0.0.1" if bound_host == "0.0.0.0" else "::1"  # noqa: S104
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.base_url = f"http://{shown}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _respond(status: int, headers: dict[str, str], body: Any) -> web.Response:
    """A response from (status, headers, body): dicts and lists as JSON, strings as text, None as no body."""
    out: CIMultiDict[str] = CIMultiDict({str(k): str(v) for k, v in headers.items()})
    if body is None:
        return web.Response(status=status, headers=out)
    if isinstance(body, str):
        out.setdefault("Content-Type", "text/plain; charset=utf-8")
        return web.Response(status=status, headers=out, body=body.encode())
    out.setdefault("Content-Type", "application/json")
    return web.Response(status=status, headers=out, body=json.dumps(body).encode())


async def run_simulator(host: str, port: int, token: str, token_ttl: float | None = None) -> None:
    """Run the simulator until cancelled, after printing where it listens."""
    sim = Simulator(token=token, token_ttl=token_ttl)
    base = await sim.start(host, port)
    lifetime = "" if token_ttl is None else f", expires in {token_ttl:g} s; POST /sim/tokens for fresh ones"
    print(f"simulator listening on {base} (token: {token}{lifetime})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
