"""The simulator's control endpoints (``/sim/...``): create and inspect operations, tokens, counters."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from relay.simulator.answers import graph_error, json_body
from relay.simulator.options import SimOperation, SimOptions

if TYPE_CHECKING:
    from relay.simulator.server import Simulator

__all__ = ["Control"]


class Control:
    """What tests and ``relay simulate`` users drive the simulator with, over HTTP."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/sim/operations", self.create)
        app.router.add_get("/sim/operations/{op_id}", self.get)
        app.router.add_delete("/sim/operations/{op_id}", self.delete)
        app.router.add_get("/sim/stats", self.stats)
        app.router.add_post("/sim/tokens", self.issue_token)
        app.router.add_delete("/sim/tokens", self.expire_tokens)

    async def create(self, request: web.Request) -> web.Response:
        try:
            opts = SimOptions.from_mapping(await json_body(request))
        except (TypeError, ValueError) as exc:
            return graph_error(400, "invalidRequest", str(exc))
        op = self.sim._create(opts, self.sim.base_url or f"{request.scheme}://{request.host}")
        return web.json_response({"id": op.id, "monitorUrl": op.monitor_url, "resourceId": op.resource_id}, status=201)

    def _op(self, request: web.Request) -> SimOperation:
        op = self.sim.operations.get(request.match_info["op_id"].upper())
        if op is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": {"code": "itemNotFound", "message": "No such operation."}}),
                content_type="application/json",
            )
        return op

    async def get(self, request: web.Request) -> web.Response:
        op = self._op(request)
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

    async def delete(self, request: web.Request) -> web.Response:
        self._op(request).deleted = True
        return web.Response(status=204)

    async def issue_token(self, request: web.Request) -> web.Response:
        """``POST /sim/tokens`` (optional ``{"ttl": seconds}``): a fresh token, as an OAuth token endpoint answers."""
        body = await json_body(request)
        ttl = body.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl >= 0):
            return graph_error(400, "invalidRequest", "ttl must be a number of seconds >= 0")
        token, expires = self.sim.tokens.issue(None if ttl is None else float(ttl))
        answer: dict[str, Any] = {"token_type": "Bearer", "access_token": token}
        if expires is not None:
            answer["expires_in"] = max(0, round(expires - time.time()))
        return web.json_response(answer, status=201)

    async def expire_tokens(self, _: web.Request) -> web.Response:
        """``DELETE /sim/tokens``: every token so far expires now (a copy that outlived its token, without the wait)."""
        self.sim.tokens.expire_all()
        return web.Response(status=204)

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "operations": len(self.sim.operations),
                "polls": self.sim.total_polls,
                "itemRequests": self.sim.item_requests,
            }
        )
