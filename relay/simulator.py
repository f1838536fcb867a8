"""A Microsoft Graph long-running-action simulator: a real aiohttp server behaving like the seed documents.

Copy and upload-from-URL requests answer ``202 Accepted`` with a monitor URL in ``Location``; the
monitor answers progress, then completes in one of the forms seen in the wild (303 See Other,
the Graph beta 202/200 ``completed`` body, or OneDrive for Business's 200 with the DriveItem
itself); the item endpoint requires the bearer token. Knobs inject failures, 404s, throttling,
5xx and junk. ``relay simulate`` runs it standalone for users' own integration tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

__all__ = ["SimOperation", "SimOptions", "Simulator", "run_simulator"]

_RESOURCE_ALPHABET = string.ascii_uppercase + string.digits


@dataclass
class SimOptions:
    """Knobs of one simulated operation."""

    duration: float = 5.0
    operation: str = "ItemCopy"
    completion: str = "303"  # 303 | 303-bare | beta202 | beta200 | item200
    always200: bool = False
    outcome: str = "completed"  # completed | failed | deleteFailed | cancelled
    error_code: str = "AccessDenied_CopyFailed"
    status_description: str = "Copy failed: access denied"
    not_started_for: float = 0.0
    stuck: bool = False
    gone_after: float | None = None
    rate_429: float = 0.0
    retry_after: str | None = "1"
    rate_503: float = 0.0
    rate_500: float = 0.0
    status_on_500: bool = False
    junk: bool = False
    latency: float = 0.0
    monitor_style: str = "onedrive"  # onedrive | sharepoint
    script: list[dict[str, Any]] | None = None
    name: str = "Copy of LargeFolder1"

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SimOptions:
        """Knobs from JSON or a query string, camelCase or snake_case, strings converted to the field type."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        camel = {_camel(name): name for name in known}
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            name = key if key in known else camel.get(key)
            if name is None:
                raise ValueError(f"unknown knob {key!r}")
            kwargs[name] = _convert(known[name].type, raw, name)
        return cls(**kwargs)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _convert(kind: Any, raw: Any, name: str) -> Any:
    if not isinstance(raw, str) or kind in ("str", "str | None"):
        return raw
    if kind == "bool":
        return raw.lower() in ("1", "true", "yes", "on")
    if kind in ("float", "float | None"):
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"knob {name} must be a number") from None
    return raw


@dataclass
class SimOperation:
    id: str
    resource_id: str
    options: SimOptions
    monitor_url: str
    created: float = field(default_factory=time.monotonic)
    polls: int = 0
    deleted: bool = False
    tempauth: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def drive_item(self) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        item: dict[str, Any] = {
            "id": self.resource_id,
            "name": self.options.name,
            "size": 12019,
            "createdDateTime": now,
            "lastModifiedDateTime": now,
            "webUrl": f"https://contoso-my.sharepoint.com/personal/me/Documents/{self.options.name}",
            "parentReference": {"driveId": "b!simulated", "driveType": "business", "path": "/drive/root:/Documents"},
        }
        if self.options.operation == "UploadFromUrl":
            item["file"] = {"mimeType": "application/octet-stream"}
        else:
            item["folder"] = {"childCount": 12}
        return item

    def _status_body(self, status: str, pct: float) -> dict[str, Any]:
        return {"operation": self.options.operation, "percentageComplete": round(pct, 1), "status": status}

    def state(self, now: float, base_url: str) -> tuple[int, dict[str, str], Any]:
        """The fault-free answer at ``now``: (http status, headers, JSON body or None)."""
        opts = self.options
        elapsed = now - self.created
        if opts.gone_after is not None and elapsed >= opts.duration + opts.gone_after:
            return 404, {}, {"error": {"code": "itemNotFound", "message": "The monitor no longer exists"}}
        running = 200 if opts.always200 else 202
        if elapsed < opts.duration:
            if elapsed < opts.not_started_for:
                return running, {}, self._status_body("notStarted", 0.0)
            pct = 0.0 if opts.stuck else min(99.9, 100.0 * elapsed / opts.duration) if opts.duration > 0 else 0.0
            return running, {}, self._status_body("inProgress", pct)
        if opts.outcome != "completed":
            body = self._status_body(opts.outcome, 100.0 * min(1.0, 0.6))
            body.update(errorCode=opts.error_code, statusDescription=opts.status_description)
            return running, {}, body
        done = {"percentageComplete": 100.0, "resourceId": self.resource_id, "status": "completed"}
        location = {"Location": f"{base_url}/v1.0/me/drive/items/{self.resource_id}"}
        if opts.completion == "303":
            return 303, location, done
        if opts.completion == "303-bare":
            return 303, location, None
        if opts.completion == "beta202":
            return 202, {}, {"operation": opts.operation, **done}
        if opts.completion == "beta200":
            return 200, {}, {"operation": opts.operation, **done}
        return 200, {}, self.drive_item()  # item200


class Simulator:
    def __init__(self, *, token: str = "sim-token", seed: int | None = None) -> None:  # noqa: S107  # a simulator
        self.token = token
        self.base_url = ""
        self.operations: dict[str, SimOperation] = {}
        self.item_requests = 0
        self.item_auth_headers: list[str] = []
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._by_resource: dict[str, SimOperation] = {}

    @property
    def total_polls(self) -> int:
        return sum(op.polls for op in self.operations.values())

    def create(self, options: SimOptions | None = None, **knobs: Any) -> SimOperation:
        opts = options or SimOptions(**knobs)
        op_id = str(uuid.uuid4()).upper()
        resource_id = "01" + "".join(self._rng.choice(_RESOURCE_ALPHABET) for _ in range(32))
        op = SimOperation(op_id, resource_id, opts, monitor_url="")
        if opts.monitor_style == "sharepoint":
            op.monitor_url = f"{self.base_url}/_api/v2.0/drives/b!simulated/operations/{op_id}?tempauth={op.tempauth}"
        else:
            op.monitor_url = f"{self.base_url}/monitor/{op_id}"
        self.operations[op_id] = op
        self._by_resource[resource_id] = op
        return op

    # -- handlers ---------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    @staticmethod
    def _graph_error(status: int, code: str, message: str) -> web.Response:
        return web.json_response({"error": {"code": code, "message": message}}, status=status)

    def _unauthorized(self) -> web.Response:
        return self._graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")

    def _knobs(self, request: web.Request, **defaults: Any) -> SimOptions:
        values: dict[str, Any] = dict(defaults)
        values.update(request.query)
        try:
            return SimOptions.from_mapping(values)
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    async def _copy(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return self._graph_error(400, "invalidRequest", "Malformed JSON body")
        name = body.get("name") if isinstance(body, dict) else None
        opts = self._knobs(request, **({"name": name} if isinstance(name, str) else {}))
        op = self.create(opts)
        return web.Response(status=202, headers={"Location": op.monitor_url})

    async def _children(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        try:
            body = await request.json()
        except ValueError:
            return self._graph_error(400, "invalidRequest", "Malformed JSON body")
        if not isinstance(body, dict) or "@microsoft.graph.sourceUrl" not in body:
            return self._graph_error(400, "invalidRequest", "only upload from URL is simulated")
        if "respond-async" not in request.headers.get("Prefer", ""):
            return self._graph_error(400, "invalidRequest", "upload from URL requires Prefer: respond-async")
        name = body.get("name")
        opts = self._knobs(request, operation="UploadFromUrl", **({"name": name} if isinstance(name, str) else {}))
        op = self.create(opts)
        return web.Response(status=202, headers={"Location": op.monitor_url})

    async def _monitor(self, request: web.Request) -> web.StreamResponse:
        op = self.operations.get(request.match_info["op_id"].upper())
        if op is None:
            return self._graph_error(404, "itemNotFound", "The monitor does not exist")
        op.polls += 1
        if "drive_id" in request.match_info and request.query.get("tempauth") != op.tempauth:
            return self._graph_error(401, "unauthenticated", "tempauth is missing or wrong")
        if "Authorization" in request.headers:
            return self._graph_error(400, "invalidRequest", "monitor requests must not carry credentials")
        opts = op.options
        if opts.latency:
            await asyncio.sleep(opts.latency)
        if op.deleted:
            return self._graph_error(404, "itemNotFound", "The monitor no longer exists")
        if opts.script:
            step = opts.script[min(op.polls - 1, len(opts.script) - 1)]
            return _scripted(step)
        if opts.junk:
            return web.Response(status=200, text="<html>junk</html>", content_type="text/html")
        status, headers, body = op.state(time.monotonic(), self.base_url)
        draw = self._rng.random()
        retry = {"Retry-After": opts.retry_after} if opts.retry_after is not None else {}
        if draw < opts.rate_429:
            return web.json_response({"error": {"code": "activityLimitReached"}}, status=429, headers=retry)
        draw -= opts.rate_429
        if draw < opts.rate_503:
            return web.Response(status=503, headers=retry, text="Service Unavailable")
        draw -= opts.rate_503
        if draw < opts.rate_500:
            if opts.status_on_500 and status != 404 and body is not None and "status" in body:
                return web.json_response(body, status=500)
            return web.Response(status=500, text="Internal Server Error")
        if body is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    async def _item(self, request: web.Request) -> web.Response:
        self.item_requests += 1
        self.item_auth_headers.append(request.headers.get("Authorization", ""))
        if not self._authorized(request):
            return self._unauthorized()
        op = self._by_resource.get(request.match_info["item_id"])
        if op is None:
            return self._graph_error(404, "itemNotFound", "The resource could not be found.")
        return web.json_response(op.drive_item())

    async def _control_create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
            opts = SimOptions.from_mapping(body if isinstance(body, dict) else {})
        except (TypeError, ValueError) as exc:
            return self._graph_error(400, "invalidRequest", str(exc))
        op = self.create(opts)
        return web.json_response({"id": op.id, "monitorUrl": op.monitor_url, "resourceId": op.resource_id}, status=201)

    def _control_op(self, request: web.Request) -> SimOperation:
        op = self.operations.get(request.match_info["op_id"].upper())
        if op is None:
            raise web.HTTPNotFound(text="no such operation")
        return op

    async def _control_get(self, request: web.Request) -> web.Response:
        op = self._control_op(request)
        return web.json_response(
            {
                "id": op.id,
                "resourceId": op.resource_id,
                "monitorUrl": op.monitor_url,
                "polls": op.polls,
                "deleted": op.deleted,
                "options": dataclasses.asdict(op.options),
            }
        )

    async def _control_delete(self, request: web.Request) -> web.Response:
        self._control_op(request).deleted = True
        return web.Response(status=204)

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"operations": len(self.operations), "polls": self.total_polls, "itemRequests": self.item_requests}
        )

    def app(self) -> web.Application:
        app = web.Application()
        for prefix in ("/v1.0/me/drive", "/beta/me/drive", "/v1.0/drives/{drive_id_}"):
            app.router.add_post(prefix + "/items/{item_id}/copy", self._copy)
            app.router.add_get(prefix + "/items/{item_id}", self._item)
        app.router.add_post("/v1.0/me/drive/items/{parent_id}/children", self._children)
        app.router.add_get("/monitor/{op_id}", self._monitor)
        app.router.add_get("/_api/v2.0/drives/{drive_id}/operations/{op_id}", self._monitor)
        app.router.add_post("/sim/operations", self._control_create)
        app.router.add_get("/sim/operations/{op_id}", self._control_get)
        app.router.add_delete("/sim/operations/{op_id}", self._control_delete)
        app.router.add_get("/sim/stats", self._stats)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound = self._runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.base_url = f"http://{shown}:{bound[1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _scripted(step: dict[str, Any]) -> web.Response:
    status = int(step.get("status", 200))
    headers = dict(step.get("headers") or {})
    body = step.get("body")
    if body is None:
        return web.Response(status=status, headers=headers)
    if isinstance(body, str):
        return web.Response(status=status, headers=headers, text=body, content_type="text/plain")
    return web.json_response(body, status=status, headers=headers)


async def run_simulator(host: str, port: int, token: str) -> None:
    sim = Simulator(token=token)
    base = await sim.start(host, port)
    print(f"simulator listening on {base} (token: {token})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
