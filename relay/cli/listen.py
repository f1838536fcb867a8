"""``relay listen``: a local receiver for relay's webhooks, to try relay out before writing one's own.

It verifies every POST's Standard Webhooks signature with the secrets it is given (``--secret``, else
``RELAY_SIGNING_SECRETS``, else the one ``relay dev`` keeps: :mod:`relay.cli.devstate`), prints each event on
one line (its type, job, sequence and the fields that matter for that type; ``--json``: the body as received),
and answers ``204``. A request whose signature does not verify is answered ``401`` and printed with the
reason, which is what relay records as a failed attempt and retries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
from collections import OrderedDict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from relay.cli.devstate import load_dev_state
from relay.cli.startup import listen
from relay.config.parsing import ConfigError, check_secret

if TYPE_CHECKING:  # rich and aiohttp's server are imported when `relay listen` runs, not by the other commands
    from aiohttp import web
    from rich.console import Console
    from rich.text import Text

__all__ = ["add_listen_parser", "summary"]

DEFAULT_PORT = 9000
#: webhook-ids remembered to mark a redelivery ("again")
_SEEN = 10_000
_STYLE = {"job.progress": "yellow", "job.completed": "green", "job.failed": "red", "job.authorizationRequired": "cyan"}


def summary(event: dict[str, Any]) -> str:
    """The fields of an event that matter for its type, on one line (after its type, job and sequence)."""
    data = event.get("data") or {}
    kind = event.get("type")
    parts = [str(data.get("operation") or ""), f"{float(data.get('percentageComplete') or 0):g}%"]
    if kind == "job.progress":
        parts += [str(data.get("monitorStatus") or ""), _quoted(data.get("statusDescription"))]
    elif kind == "job.completed":
        parts += _completed(data)
    elif kind == "job.failed":
        error = data.get("error") or {}
        why = error.get("errorCode") or error.get("httpStatus")
        parts += [f"error {error.get('code')}" + (f" ({why})" if why else ""), _quoted(error.get("message"))]
    elif kind == "job.authorizationRequired":
        parts += [
            f"{data.get('reason')}: PATCH a fresh authorization before {data.get('waitUntil')}",
            f"(ask {data.get('ask')} of {data.get('maxAsks')})",
        ]
    if data.get("metadata"):
        parts.append("metadata " + json.dumps(data["metadata"], separators=(",", ":")))
    return "  ".join(part for part in parts if part)


def _completed(data: dict[str, Any]) -> list[str]:
    item = data.get("driveItem")
    if isinstance(item, dict):
        size = f"{item['size']:,} B" if isinstance(item.get("size"), int) else ""
        return [f"item {item.get('id') or data.get('resourceId')}", _quoted(item.get("name")), size]
    problem = data.get("resolutionError") or {}
    return [f"item {data.get('resourceId')} not fetched: {problem.get('code')}", _quoted(problem.get("message"))]


def _quoted(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if value else ""


class Listener:
    """The receiver: verifies, prints, answers."""

    def __init__(self, secrets: list[str], *, raw: bool, console: Console, errors: Console) -> None:
        self.hooks = [Webhook(secret) for secret in secrets]
        self.raw = raw
        self.console = console
        self.errors = errors
        self.received = 0
        self.refused = 0
        self.seen: OrderedDict[str, None] = OrderedDict()

    def verify(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """The event, if one of the secrets signed it; else the reason the last check gave."""
        reason = WebhookVerificationError("no secret to verify with")
        for hook in self.hooks:
            try:
                event: dict[str, Any] = hook.verify(body, headers)
                return event
            except WebhookVerificationError as exc:
                reason = exc
        raise reason

    async def handle(self, request: web.Request) -> web.Response:
        from aiohttp import web

        body = await request.read()
        headers = dict(request.headers)
        webhook_id = request.headers.get("webhook-id", "")
        try:
            event = self.verify(body, headers)
        except WebhookVerificationError as exc:
            self.refused += 1
            from rich.text import Text

            tried = f"{len(self.hooks)} secret{'s' if len(self.hooks) != 1 else ''}"
            line = Text(f"{_now()} ", style="dim")
            line.append("401 refused", style="bold red")
            line.append(f" {request.method} {request.path} webhook-id {webhook_id or '-'}: {exc} ({tried} tried)")
            if str(exc) == "No matching signature found":
                line.append("; is --secret / RELAY_SIGNING_SECRETS the secret relay signs with?")
            self.errors.print(line, soft_wrap=True)
            return web.Response(status=401, text=f"signature not verified: {exc}\n")
        self.received += 1
        again = webhook_id in self.seen
        self.seen[webhook_id] = None
        if len(self.seen) > _SEEN:
            self.seen.popitem(last=False)
        if self.raw:
            print(body.decode("utf-8", "replace"), flush=True)
        else:
            self.console.print(self._line(event, again), soft_wrap=True)
        return web.Response(status=204)

    @staticmethod
    def _line(event: dict[str, Any], again: bool) -> Text:
        from rich.text import Text

        data = event.get("data") or {}
        kind = str(event.get("type"))
        line = Text(f"{_now()} ", style="dim")
        line.append(f"{kind:<26}", style=_STYLE.get(kind, "bold"))
        line.append(f" {data.get('jobId')} #{data.get('sequence')}")
        if again:
            line.append(" (again: same webhook-id)", style="dim")
        line.append("  " + summary(event))
        return line


def _now() -> str:
    return datetime.now().strftime("%H:%M:%S")


def _secrets(args: argparse.Namespace) -> tuple[list[str], str]:
    """The secrets to verify with and where they came from; ConfigError when there are none or one is malformed."""
    given: list[str] = [s for value in args.secret or () for s in value.split(",") if s.strip()]
    source = "--secret"
    if not given:
        given = [s for s in os.environ.get("RELAY_SIGNING_SECRETS", "").split(",") if s.strip()]
        source = "RELAY_SIGNING_SECRETS"
    if not given:
        state = load_dev_state()
        if state is not None:
            return [state.signing_secret], f"relay dev's {state.path}"
    if not given:
        raise ConfigError(
            "relay listen verifies signatures: give the secret relay signs with, --secret whsec_... or "
            "RELAY_SIGNING_SECRETS (relay dev has kept none yet: run it once, or give the secret)"
        )
    try:
        return [check_secret(secret.strip()) for secret in given], source
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


async def _serve(listener: Listener, sockets: list[socket.socket], path: str) -> None:
    from aiohttp import web

    app = web.Application(client_max_size=1024 * 1024)
    if path == "/":
        app.router.add_post("/{tail:.*}", listener.handle)
    else:
        app.router.add_post(path, listener.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def cmd_listen(args: argparse.Namespace) -> int:
    secrets, source = _secrets(args)
    sockets = listen(args.host, args.port, host_option="--host", port_option="--port")
    port = sockets[0].getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{port}{args.path}"
    from rich.console import Console

    errors = Console(stderr=True, highlight=False)
    console = Console(highlight=False)
    listener = Listener(secrets, raw=args.json, console=console, errors=errors)
    where = "any path" if args.path == "/" else "this path only"
    plural = "s" if len(secrets) != 1 else ""
    errors.print(
        f"relay listen: {url} ({where}): give it as callbackUrl; verifying with {len(secrets)} secret{plural} "
        f"from {source}; answers 204, or 401 for a bad signature. Ctrl-C stops.",
        soft_wrap=True,
    )
    asyncio.run(_serve(listener, sockets, args.path))
    errors.print(f"relay listen: {listener.received} events verified, {listener.refused} refused")
    return 0


def add_listen_parser(subparsers: Any) -> None:
    """Register ``relay listen`` on the ``relay`` command's subparsers."""
    command = subparsers.add_parser(
        "listen", help="a local receiver: verifies each webhook's signature, prints it, answers 204"
    )
    command.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    command.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT}; 0: any free)"
    )
    command.add_argument("--path", default="/", help="the one path to answer (default: any path)")
    command.add_argument(
        "--secret",
        action="append",
        help="a whsec_ secret events are signed with (repeat, or comma-separate, for several); "
        "default RELAY_SIGNING_SECRETS, else the one relay dev keeps",
    )
    command.add_argument("--json", action="store_true", help="print each verified event's body as received")
    command.set_defaults(func=cmd_listen)
