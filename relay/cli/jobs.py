"""``relay jobs list|show|cancel|redeliver``: a running relay's jobs, as tables, through its HTTP API.

Every command talks to ``--api`` (default ``http://127.0.0.1:8080``) with ``--token`` (default
``RELAY_API_TOKEN``, else the first of ``RELAY_API_TOKENS``). Exit codes: 0 done, 1 the API said no
(its problem+json is shown) or could not be reached.

What the API returns holds what peers wrote (a monitor's ``operation`` and ``statusDescription``, a
DriveItem, error messages): every value is printed as plain text (never rich markup) with control
characters shown escaped (``\x1b``), so none can drive the terminal or stop the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp

if TYPE_CHECKING:  # rich is imported by the commands that print, not by `relay serve` / `relay worker`
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

__all__ = ["DEFAULT_API", "ApiError", "add_jobs_parser", "default_token"]

DEFAULT_API = "http://127.0.0.1:8080"
_TIMEOUT = aiohttp.ClientTimeout(total=30)
_STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "dim",
    "inProgress": "yellow",
    "waiting for authorization": "bold yellow",
    "notStarted": "dim",
    "delivered": "green",
    "dead": "red",
    "gone": "red",
    "superseded": "dim",
    "pending": "yellow",
    "retrying": "yellow",
}


#: C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(text: str) -> str:
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


def _plain(value: Any, style: str = "") -> Text:
    """A value from the API as terminal text: no markup read in it, its control characters escaped."""
    from rich.text import Text

    return Text(_escaped("" if value is None else str(value)), style=style)


class ApiError(Exception):
    """The API answered with an error, or could not be reached; the message is meant for the user."""


def default_token() -> str | None:
    token = os.environ.get("RELAY_API_TOKEN", "").strip()
    if token:
        return token
    first = os.environ.get("RELAY_API_TOKENS", "").split(",")[0].strip()
    return first.partition(":")[2] or first or None  # a named token is name:token


async def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    headers = {"Accept": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    url = args.api.rstrip("/") + path
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as session,
            session.request(method, url, headers=headers, json=body) as resp,
        ):
            text = await resp.text()
            body = json.loads(text) if text and "json" in resp.content_type else None
            if resp.status >= 400:
                if isinstance(body, dict):
                    detail = f": {body['detail']}" if body.get("detail") else ""
                    raise ApiError(f"{resp.status} {body.get('title', resp.reason)}{detail}")
                raise ApiError(f"{resp.status} {resp.reason}")
            return body
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiError(f"cannot reach {args.api}: {type(exc).__name__} {exc}".rstrip()) from None


def _quoted(args: argparse.Namespace) -> str:
    return quote(args.job_id, safe="")


def _styled(value: str | None) -> Text:
    value = value or ""
    return _plain(value, style=_STATUS_STYLE.get(value, ""))


def _status(job: dict[str, Any]) -> Text:
    """The job's status, or that it waits for a fresh authorization (the app must PATCH one); an ended job whose
    final event is not delivered says so: completed is not the same as told."""
    if job.get("phase") == "awaitingAuthorization":
        return _styled("waiting for authorization")
    delivery = job.get("delivery") or {}
    text = _styled(job["status"])
    if job["status"] in ("completed", "failed") and delivery.get("state") not in (None, "delivered"):
        text.append(_plain(f", delivery {delivery['state']}", style=_STATUS_STYLE.get(str(delivery["state"]), "")))
    return text


def _in(iso: str, now: datetime | None = None) -> str:
    """How long until ``iso``: 'now', 'in 42 s', 'in 4 min 58 s', 'in 2 h 5 min'."""
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = round((when - (now or datetime.now(UTC))).total_seconds())
    if seconds <= 0:
        return "now"
    if seconds < 60:
        return f"in {seconds} s"
    if seconds < 3600:
        return f"in {seconds // 60} min {seconds % 60} s"
    return f"in {seconds // 3600} h {seconds % 3600 // 60} min"


def _delivery(job: dict[str, Any]) -> Text:
    """Where the job's webhooks stand: the newest event's state, how its last attempt failed, when the next comes."""
    from rich.text import Text

    delivery = job.get("delivery")
    if not delivery:
        return Text("no events yet", style="dim")
    state = str(delivery["state"])
    text = _plain(f"{delivery['type']} (seq {delivery['sequence']}) ")
    text.append(_styled(state))
    text.append(_plain(f", {delivery['attempts']} attempt{'s' if delivery['attempts'] != 1 else ''}"))
    if delivery.get("lastError"):
        text.append(_plain(f"; last: {delivery['lastError']}"))
    if delivery.get("nextAttemptDateTime"):
        when = str(delivery["nextAttemptDateTime"])
        text.append(_plain(f"; next attempt {when} ({_in(when)})", style="bold"))
    if state == "dead":
        text.append(_plain(f"; relay jobs redeliver {job['id']}"))
    return text


def _pct(job: dict[str, Any]) -> str:
    pct = float(job.get("percentageComplete") or 0)
    filled = round(pct / 10)
    return f"{'█' * filled}{'░' * (10 - filled)} {pct:5.1f}%"


def _console() -> Console:
    from rich.console import Console

    # a pipe gets wide tables too: ids are 32 characters and must never be cut
    return Console(width=None if sys.stdout.isatty() else max(160, int(os.environ.get("COLUMNS", "0") or 0)))


def _jobs_table(jobs: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title="jobs", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=32)
    table.add_column("status", no_wrap=True)
    table.add_column("operation", no_wrap=True)
    table.add_column("progress", no_wrap=True)
    table.add_column("seq", justify="right")
    table.add_column("polls", justify="right")
    table.add_column("created", no_wrap=True)
    for job in jobs:
        table.add_row(
            _plain(job["id"]),
            _status(job),
            _plain(job.get("operation")),
            _pct(job),
            _plain(job.get("sequence", 0)),
            _plain(job.get("pollCount", 0)),
            _plain(job.get("createdDateTime")),
        )
    return table


async def _list(args: argparse.Namespace) -> int:
    query = {"limit": str(args.limit), **({"cursor": args.cursor} if args.cursor else {})}
    page = await _call(args, "GET", f"/v1/jobs?{urlencode(query)}")
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    console = _console()
    if not page["jobs"]:
        console.print("no jobs")
    else:
        console.print(_jobs_table(page["jobs"]))
    if page.get("nextCursor"):
        console.print(_plain(f"more: relay jobs list --cursor {page['nextCursor']}"), soft_wrap=True)
    return 0


async def _show(args: argparse.Namespace) -> int:
    from rich.table import Table

    job = await _call(args, "GET", f"/v1/jobs/{_quoted(args)}")
    deliveries = await _call(args, "GET", f"/v1/jobs/{_quoted(args)}/deliveries")
    if args.json:
        print(json.dumps({"job": job, **deliveries}, indent=2))
        return 0
    console = _console()
    info = Table(title=_plain(f"job {job['id']}"), title_justify="left", show_header=False)
    info.add_column("field", style="bold", no_wrap=True)
    info.add_column("value", overflow="fold")
    for name, value in job.items():
        if name == "percentageComplete":
            info.add_row(_plain(name), _pct(job))
        elif name == "status":
            info.add_row(_plain(name), _status(job))
        elif name == "delivery":
            info.add_row(_plain(name), _delivery(job))
        elif isinstance(value, dict | list):
            info.add_row(_plain(name), _plain(json.dumps(value)))
        else:
            info.add_row(_plain(name), _plain(value))
    console.print(info)
    events = Table(title="events", title_justify="left")
    for column in ("seq", "type", "state", "attempts", "event id"):
        events.add_column(column, no_wrap=True)
    for event in deliveries["events"]:
        events.add_row(
            _plain(event["sequence"]),
            _plain(event["type"]),
            _styled(event["state"]),
            _plain(event["attempts"]),
            _plain(event["eventId"]),
        )
    console.print(events if deliveries["events"] else "no events yet")
    _print_attempts(console, deliveries["deliveries"])
    return 0


def _print_attempts(console: Console, records: list[dict[str, Any]]) -> None:
    """The delivery attempts; progress events superseded before they were tried are one line, not a row each."""
    from rich.table import Table

    attempts = Table(title="deliveries", title_justify="left")
    for column in ("time", "type", "seq", "attempt", "outcome", "answer", "ms"):
        attempts.add_column(column, no_wrap=True)
    superseded = [a for a in records if a.get("outcome") == "superseded"]
    for attempt in records:
        if attempt.get("outcome") == "superseded":
            continue
        answer = attempt.get("error") or attempt.get("status") or ""
        duration = attempt.get("durationMs")
        attempts.add_row(
            _plain(attempt.get("time")),
            _plain(attempt.get("type")),
            _plain(attempt.get("sequence")),
            _plain(attempt.get("attempt")),
            _styled(attempt.get("outcome")),
            _plain(answer),
            _plain(None if duration is None else round(duration)),
        )
    console.print(attempts if attempts.row_count else "no delivery attempts yet")
    if superseded:
        console.print(f"{len(superseded)} progress events superseded by a newer one before they were sent (not tried)")


async def _cancel(args: argparse.Namespace) -> int:
    await _call(args, "DELETE", f"/v1/jobs/{_quoted(args)}")
    _console().print(_plain(f"cancelled {args.job_id}"))
    return 0


async def _redeliver(args: argparse.Namespace) -> int:
    chosen = {"eventId": args.event} if args.event else None
    body = await _call(args, "POST", f"/v1/jobs/{_quoted(args)}/redeliver", chosen)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    _console().print(_plain(f"queued {body['type']} {body['eventId']} of {body['jobId']} again"))
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = asyncio.run(args.jobs_func(args))
    except ApiError as exc:
        print(f"relay jobs: {_escaped(str(exc))}", file=sys.stderr)
        return 1
    return code


def _limit(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 200:
        raise argparse.ArgumentTypeError("must be from 1 to 200")
    return value


def add_jobs_parser(subparsers: Any) -> None:
    """Register ``relay jobs ...`` on the ``relay`` command's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", default=DEFAULT_API, help=f"the relay API's base URL (default {DEFAULT_API})")
    common.add_argument(
        "--token",
        default=default_token(),
        help="bearer token (default: RELAY_API_TOKEN, else the first of RELAY_API_TOKENS)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON instead of tables")
    jobs = subparsers.add_parser("jobs", help="list, show, cancel or redeliver jobs of a running relay")
    sub = jobs.add_subparsers(dest="jobs_command", required=True)

    listing = sub.add_parser("list", parents=[common], help="your jobs, newest first")
    listing.add_argument("--limit", type=_limit, default=50, help="jobs per page (1-200, default 50)")
    listing.add_argument("--cursor", help="the nextCursor of an earlier page")
    listing.set_defaults(func=_run, jobs_func=_list)

    for name, func, text in (
        ("show", _show, "one job with its events and delivery attempts"),
        ("cancel", _cancel, "stop tracking a job (it stays readable as cancelled)"),
        ("redeliver", _redeliver, "send a job's final event (or --event) again, same webhook-id"),
    ):
        command = sub.add_parser(name, parents=[common], help=text)
        command.add_argument("job_id", help="the job's id")
        if name == "redeliver":
            command.add_argument("--event", help="the eventId of another of its events (relay jobs show lists them)")
        command.set_defaults(func=_run, jobs_func=func)
