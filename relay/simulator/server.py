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
import random
import secrets
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from relay.simulator.answers import graph_error, json_body, refused_action, respond
from relay.simulator.control import Control
from relay.simulator.forms import OPERATIONS, throttled_body, unavailable_body
from relay.simulator.names import Names, behavior_of
from relay.simulator.options import (
    DRIVE_ID,
    RESOURCE_ALPHABET,
    SimOperation,
    SimOptions,
    iso,
)
from relay.simulator.tokens import TokenIssuer

__all__ = ["Simulator", "run_simulator"]


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
        self.names = Names()
        """Names the actions created, per destination (``@microsoft.graph.conflictBehavior``)."""
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
        resource_id = "01" + "".join(self._ids.choice(RESOURCE_ALPHABET) for _ in range(32))
        op = SimOperation(op_id, resource_id, opts, base_url=base_url)
        if parent:
            op.parent_reference.update(parent)
        if opts.monitor_style == "sharepoint":
            op.monitor_url = f"{base_url}/_api/v2.0/drives/{DRIVE_ID}/operations/{op_id}?tempauth={op.tempauth}"
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
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            message,
            inner={"date": iso(datetime.now(UTC)), "request-id": str(uuid.uuid4())},
            headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
        )

    def _start_action(self, request: web.Request, body: dict[str, Any], **defaults: Any) -> web.Response:
        """Create the operation asked for (knobs in the query string) and answer 202 with the monitor URL.

        Graph's own ``@microsoft.graph.conflictBehavior`` (query string, or an upload's body) is taken as Graph
        takes it; every other query parameter is a knob."""
        values: dict[str, Any] = dict(defaults)
        if isinstance(body.get("name"), str):
            values["name"] = body["name"]
        values.update(request.query)
        try:
            behavior = behavior_of(values) or behavior_of(dict(body))
            opts = SimOptions.from_mapping(values)
        except (TypeError, ValueError) as exc:
            return graph_error(400, "invalidRequest", str(exc))
        refused = refused_action(opts)
        if refused is not None:
            return refused
        parent = body.get("parentReference") if isinstance(body.get("parentReference"), dict) else None
        claim = self.names.claim(self.names.destination(parent, request.match_info["item_id"]), opts.name, behavior)
        if claim.refused:
            return graph_error(409, "nameAlreadyExists", "The specified item name already exists.")
        if claim.name != opts.name or claim.fails:
            opts = dataclasses.replace(opts, name=claim.name, name_conflict=claim.fails)
            opts = dataclasses.replace(opts, outcome="failed") if claim.fails else opts
        self.actions += 1
        op = self._create(opts, f"{request.scheme}://{request.host}", parent)
        if opts.answer == "sync":
            op.created -= opts.duration  # done already: its item exists and the item endpoint serves it
            op.created_at -= timedelta(seconds=opts.duration)
            return web.json_response(op.drive_item(), status=201)
        return web.Response(status=202, headers={"Location": op.monitor_url})

    # -- Graph endpoints ------------------------------------------------------------------------

    async def _copy(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        return self._start_action(request, await json_body(request))

    async def _children(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        body = await json_body(request)
        if "@microsoft.graph.sourceUrl" not in body:
            return graph_error(400, "invalidRequest", "Only upload from URL is simulated on /children.")
        if "respond-async" not in request.headers.get("Prefer", ""):
            return graph_error(400, "invalidRequest", "Upload from URL requires the header Prefer: respond-async.")
        return self._start_action(request, body, operation=OPERATIONS["upload"])

    async def _item(self, request: web.Request) -> web.Response:
        self.item_requests += 1
        self.item_auth_headers.append(request.headers.get("Authorization", ""))
        if (refused := self._refusal(request)) is not None:
            return refused
        op = self._by_resource.get(request.match_info["item_id"])
        if op is None or not (op.options.script or op.options.item_ids or op.is_complete()):
            return graph_error(404, "itemNotFound", "The resource could not be found.")
        op.item_requested_at.append(time.monotonic())
        if len(op.item_requested_at) <= op.options.item_throttled:
            retry = {"Retry-After": op.options.retry_after} if op.options.retry_after is not None else {}
            return web.json_response(throttled_body(), status=429, headers=retry)
        item = op.drive_item()
        item["id"] = request.match_info["item_id"]
        return web.json_response(item)

    # -- monitor --------------------------------------------------------------------------------

    async def _monitor(self, request: web.Request) -> web.StreamResponse:
        op = self.operations.get(request.match_info["op_id"].upper())
        sharepoint = "drive_id" in request.match_info
        if op is None or (op.options.monitor_style == "sharepoint") != sharepoint:
            return graph_error(404, "itemNotFound", "The monitor does not exist.")
        op.polls += 1
        op.polled_at.append(time.monotonic())
        if "Authorization" in request.headers:
            return graph_error(400, "invalidRequest", "monitor requests must not carry credentials")
        if sharepoint and not secrets.compare_digest(request.query.get("tempauth", ""), op.tempauth):
            return graph_error(401, "unauthenticated", "The tempauth token is missing or invalid.")
        opts = op.options
        if opts.latency:
            await asyncio.sleep(opts.latency)
        if op.deleted or opts.script:
            return respond(*op.state())
        if opts.junk:
            return web.Response(status=200, text="<html>junk</html>", content_type="text/html")
        fault = self._fault(op)
        if fault is not None:
            return fault
        return respond(*op.state())

    def _fault(self, op: SimOperation) -> web.Response | None:
        """One draw per poll: 429, 503, 500 or nothing, with the configured probabilities."""
        opts = op.options
        draw = self._faults.random()
        retry = {"Retry-After": opts.retry_after} if opts.retry_after is not None else {}
        if draw < opts.rate_429:
            return web.json_response(throttled_body(), status=429, headers=retry)
        draw -= opts.rate_429
        if draw < opts.rate_503:
            return web.json_response(unavailable_body(), status=503, headers=retry)
        draw -= opts.rate_503
        if draw < opts.rate_500:
            body = op.status_body() if opts.status_on_500 else None
            if body is not None:
                return web.json_response(body, status=500)
            return web.Response(status=500, text="Internal Server Error")
        return None

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
        Control(self).add_routes(app)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, sockets: list[socket.socket] | None = None) -> str:
        """Serve on ``host:port`` (0: any free port), or on ``sockets`` the caller bound; sets and returns
        :attr:`base_url`."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        if sockets is None:
            await web.TCPSite(self._runner, host, port).start()
        for sock in sockets or ():
            await web.SockSite(self._runner, sock).start()
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


async def run_simulator(
    host: str, port: int, token: str, token_ttl: float | None = None, *, sockets: list[socket.socket] | None = None
) -> None:
    """Run the simulator until cancelled, after printing where it listens (on ``sockets`` when given)."""
    sim = Simulator(token=token, token_ttl=token_ttl)
    base = await sim.start(host, port, sockets=sockets)
    lifetime = "" if token_ttl is None else f", expires in {token_ttl:g} s; POST /sim/tokens for fresh ones"
    print(f"simulator listening on {base} (token: {token}{lifetime})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
