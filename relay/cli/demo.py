"""``relay demo``: a self-contained tour.

Starts an embedded Redis, the Graph simulator, relay (API + worker) and a small receiver that
verifies every signature; has relay start a simulated large-folder copy (or an upload from URL) the
way an app would (``action`` in ``POST /v1/jobs``), and draws a progress bar from the webhooks it
receives. Everything listens on 127.0.0.1 and stops when the tour ends.

``--long`` shows a copy that outlives the app's token: the simulator's tokens expire (as Graph's do
after 60-90 minutes), relay asks with ``job.authorizationRequired``, and the app answers by PATCHing
a fresh token; the tour ends with the DriveItem and prints how soon after the PATCH it was recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.fernet import Fernet
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from standardwebhooks.webhooks import Webhook

from relay import logs
from relay.cli.dev import run_dev
from relay.cli.devstate import new_secret
from relay.config.settings import Settings
from relay.core.schema import EventType
from relay.simulator import Simulator
from relay.store.embedded import EmbeddedRedis, free_port

TERMINAL = EventType.terminal_types()

__all__ = ["run_demo"]


async def _answer_ask(
    session: aiohttp.ClientSession, sim: Simulator, api: str, console: Console, data: dict[str, Any]
) -> tuple[float, float]:
    """What the app's receiver does with ``job.authorizationRequired``: PATCH the job with a fresh token.
    Returns when the PATCH was sent and when its answer came (wall clock, as event timestamps are)."""
    why = (
        "its token had expired" if data.get("reason") == "tokenExpired" else f"Graph answered {data.get('httpStatus')}"
    )
    console.print(
        f"   [yellow]job.authorizationRequired[/]: {why}; relay waits until {data['waitUntil']} for a fresh token"
    )
    body = {"authorization": await _token(session, sim, ttl=3600)}
    sent_at = time.time()
    async with session.patch(f"{api}/v1/jobs/{data['jobId']}", json=body) as resp:
        resp.raise_for_status()
    answered_at = time.time()
    console.print("   the app PATCHed a fresh token; relay fetches the DriveItem now")
    return sent_at, answered_at


TOKEN = "sim-token"  # noqa: S105  # the simulator's own demo token, not a secret


async def _receiver(secret: str, events: asyncio.Queue[dict[str, Any]]) -> tuple[web.AppRunner, str]:
    hook = Webhook(secret)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = hook.verify(body, dict(request.headers))
        except Exception:
            return web.Response(status=401, text="bad signature")
        await events.put({"event": event, "webhook-id": request.headers.get("webhook-id")})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


async def _token(session: aiohttp.ClientSession, sim: Simulator, ttl: float) -> str:
    """What the app does to get a Graph token (MSAL against Entra ID); here the simulator's token endpoint."""
    async with session.post(f"{sim.base_url}/sim/tokens", json={"ttl": ttl}) as resp:
        answer = await resp.json()
    return f"Bearer {answer['access_token']}"


def _action(sim: Simulator, action: str, fail: bool, duration: float) -> dict[str, Any]:
    """The Graph request that starts the long-running action, as the app hands it to relay."""
    knobs = f"duration={duration}" + ("&outcome=failed" if fail else "")
    if action == "upload":
        return {
            "method": "POST",
            "url": f"{sim.base_url}/v1.0/me/drive/items/root/children?{knobs}",
            "body": {"@microsoft.graph.sourceUrl": "https://example.org/big.iso", "name": "big.iso", "file": {}},
            "headers": {"Prefer": "respond-async"},
        }
    return {
        "method": "POST",
        "url": f"{sim.base_url}/v1.0/me/drive/items/01LARGEFOLDER/copy?{knobs}",
        "body": {"parentReference": {"path": "/drive/root:/Documents"}, "name": "Copy of LargeFolder1"},
    }


async def run_demo(*, action: str = "copy", fail: bool = False, duration: float = 8.0, long: bool = False) -> int:
    console = Console()
    logs.configure("console", level=40)
    secret = new_secret()
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    with EmbeddedRedis() as redis_server:
        sim = Simulator()
        await sim.start()
        receiver, hook_url = await _receiver(secret, events)
        settings = Settings.from_env({}).replace(
            redis_url=redis_server.url,
            port=free_port(),
            signing_secrets=(secret,),
            encryption_keys=(Fernet.generate_key().decode(),),  # the demo's Redis ends with it: so does its key
            monitor_allowed_hosts=("127.0.0.1",),
            item_allowed_hosts=("127.0.0.1",),
            action_allowed_hosts=("127.0.0.1",),
            internal_hosts=("127.0.0.1",),
            poll_initial_interval=0.5,
            poll_max_interval=2.0,
            log_format="console",
        )
        stop, ready = asyncio.Event(), asyncio.Event()
        relay_task = asyncio.create_task(run_dev(settings, stop, ready=ready))
        try:
            await ready.wait()
            return await _tour(
                console, settings, sim, hook_url, events, action=action, fail=fail, duration=duration, long=long
            )
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await relay_task
            await receiver.cleanup()
            await sim.stop()


async def _tour(
    console: Console,
    settings: Settings,
    sim: Simulator,
    hook_url: str,
    events: asyncio.Queue[dict[str, Any]],
    *,
    action: str,
    fail: bool,
    duration: float,
    long: bool,
) -> int:
    api = f"http://{settings.host}:{settings.port}"
    console.print(f"[bold]relay demo[/]: simulator {sim.base_url}, relay {api}, receiver {hook_url}")
    async with aiohttp.ClientSession() as session:
        # --long: the app's token lives a third of the copy, as a 60-90 minute Graph token beside a copy of hours
        authorization = await _token(session, sim, ttl=duration / 3) if long else f"Bearer {TOKEN}"
        registration = {
            "action": _action(sim, action, fail, duration),
            "callbackUrl": hook_url,
            "authorization": authorization,
            "metadata": {"demo": action},
        }
        async with session.post(f"{api}/v1/jobs", json=registration) as resp:
            job = await resp.json()
            if resp.status != 201:
                console.print(f"[red]registration failed[/]: {job}")
                return 1
        console.print(
            f"1. the app asked relay to start the {action}: Graph answered [green]202 Accepted[/] with a monitor"
        )
        if long:
            console.print(f"   the app's token expires in {duration / 3:g} s; the copy takes {duration:g} s")
        console.print(f"2. relay tracks it as job [cyan]{job['id']}[/]; the app just listens\n")
        columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
        patched_at: tuple[float, float] | None = None
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("notStarted", total=100)
            while True:
                try:
                    item = await asyncio.wait_for(events.get(), timeout=duration * 3 + 30)
                except TimeoutError:
                    console.print("[red]no webhook arrived in time[/]")
                    return 1
                event = item["event"]
                data = event["data"]
                progress.update(
                    bar, completed=data["percentageComplete"], description=f"{event['type']} {data['status']}"
                )
                if event["type"] == "job.authorizationRequired":
                    patched_at = await _answer_ask(session, sim, api, progress.console, data)
                if event["type"] in TERMINAL:
                    break
        console.print(
            f"\n3. verified [bold]{event['type']}[/] (webhook-id {item['webhook-id']}, sequence {data['sequence']}):"
        )
        console.print(Syntax(json.dumps(event, indent=2), "json", theme="ansi_dark", word_wrap=True))
        if patched_at is not None:
            recorded = datetime.fromisoformat(event["timestamp"]).timestamp()  # to the millisecond
            sent, answered = patched_at
            after_ms, answer_ms = max(0.0, recorded - sent) * 1000, (answered - sent) * 1000
            console.print(
                f"4. {event['type']} was recorded {after_ms:.0f} ms after the app sent the PATCH "
                f"(whose answer came after {answer_ms:.0f} ms)"
            )
        if long and (patched_at is None or not data.get("driveItem")):
            console.print("[red]the long copy did not end with its DriveItem after a fresh token[/]")
            return 1
        expected = "job.failed" if fail else "job.completed"
        return 0 if event["type"] == expected else 1
