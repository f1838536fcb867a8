"""HTTP handlers. Errors are raised, the error middleware renders them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from relay import metrics
from relay.api.access import owned_job
from relay.api.live import parse_wait, wait_for_change
from relay.api.middlewares import OWNER, TENANT
from relay.api.models import JobCreate, JobPatch, check_destinations
from relay.api.openapi import openapi_document
from relay.api.problems import ProblemError
from relay.api.typedefs import BROKER, REDIS, SESSION, SETTINGS, STORE, VAULT
from relay.core import jsonfast
from relay.core.crypto import Vault
from relay.core.events import TERMINAL_TYPES
from relay.core.tracking import finished_op
from relay.credentials.broker import CredentialBroker, CredentialError
from relay.credentials.specs import find
from relay.outbound.actions import ActionRefused, action_host_allowed, derived_item_url, start_action
from relay.outbound.ssrf import Blocked, check_url, host_matches
from relay.settings import ConfigError
from relay.store.jobs import Registration

__all__ = ["routes"]

routes = web.RouteTableDef()
log = structlog.stdlib.get_logger("relay.api")

_MAX_IDEMPOTENCY_KEY = 255
#: /readyz answers 503 when Redis does not answer a PING within this many seconds
READY_TIMEOUT = 2.0


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=jsonfast.dumps(data), status=status, headers=headers, content_type="application/json")


async def _json_body(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ProblemError(415, "Unsupported Media Type", "send the body as application/json")
    raw = await request.read()
    try:
        return jsonfast.loads_request(raw)
    except jsonfast.HostileJson as exc:
        raise ProblemError(
            422, "Invalid request body", str(exc), errors=[{"field": "body", "message": str(exc)}]
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise ProblemError(400, "Malformed JSON", "the request body is not valid JSON") from None


def _destination_errors(request: web.Request, *, action_url: str | None = None, **urls: str | None) -> None:
    settings = request.app[SETTINGS]
    errors = check_destinations(
        monitor_url=urls.get("monitor_url"),
        callback_url=urls.get("callback_url"),
        drive_item_url=urls.get("drive_item_url"),
        monitor_hosts=settings.monitor_allowed_hosts,
        item_hosts=settings.item_allowed_hosts,
        trusted_hosts=settings.internal_hosts,
    )
    if action_url is not None:
        try:
            check_url(action_url, settings.internal_hosts)
        except Blocked as exc:
            errors.append({"field": "action.url", "message": str(exc)})
    if errors:
        raise ProblemError(422, "Invalid request body", "a URL is not allowed", errors=errors)


@routes.post("/v1/jobs")
async def create_job(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise ProblemError(422, "Invalid request body", "the body must be a JSON object")
    job = JobCreate.model_validate(body)
    settings = request.app[SETTINGS]
    drive_item_url = job.drive_item_url
    if job.action is not None:
        if not action_host_allowed(job.action, settings.action_allowed_hosts):
            message = "the action host is not in RELAY_ACTION_ALLOWED_HOSTS"
            raise ProblemError(
                422, "Invalid request body", message, errors=[{"field": "action.url", "message": message}]
            )
        drive_item_url = drive_item_url or derived_item_url(job.action)
    _destination_errors(
        request,
        monitor_url=job.monitor_url,
        callback_url=job.callback_url,
        drive_item_url=drive_item_url,
        action_url=job.action.url if job.action else None,
    )
    if job.credential is not None:
        _credential_allowed(request, job.credential, drive_item_url, job.action.url if job.action else None)
    idempotency = _idempotency(request, body)
    job_id = secrets.token_hex(16)
    fields = {"owner": request[OWNER], "callback_url": job.callback_url}
    if drive_item_url:
        fields["drive_item_url"] = drive_item_url
    if job.authorization:
        fields["authorization"] = _vault(request).encrypt(job.authorization)
    if job.credential:
        fields["credential"] = job.credential
    metadata = job.metadata_json()
    if metadata is not None:
        fields["metadata"] = metadata
    if job.secret:
        fields["secret"] = job.secret
    progress_interval = job.progress_interval or settings.progress_interval
    if progress_interval:
        fields["progress_interval"] = repr(float(progress_interval))
    store = request.app[STORE]
    if job.action is None:
        assert job.monitor_url is not None
        return await _register(request, job_id, fields, job.monitor_url, idempotency)
    if idempotency is not None:  # hold the key while Graph is asked: a retry must not start a second copy
        earlier = await store.reserve(idempotency, job_id, int(settings.request_timeout) + 30)
        if earlier is not None:
            return await _earlier(request, earlier, idempotency)
    try:
        started = await start_action(
            request.app[SESSION],
            job.action,
            job.authorization or await _credential_token(request, job.credential or ""),
            internal_hosts=settings.internal_hosts,
            time_limit=settings.request_timeout,
        )
        if started.monitor_url is not None:
            _monitor_answer_allowed(request, started.monitor_url)
    except ActionRefused as refused:
        if idempotency is not None:
            await store.release(idempotency, job_id)
        extra = {"graphError": refused.graph} if refused.graph else None
        raise ProblemError(refused.status, refused.title, refused.detail, extra=extra) from None
    if started.monitor_url is not None:
        return await _register(request, job_id, fields, started.monitor_url, idempotency)
    return await _register(request, job_id, fields, None, idempotency, finished=started.drive_item)


def _credential_allowed(request: web.Request, name: str, item_url: str | None, action_url: str | None) -> None:
    """A job may name a credential its API token is granted, and only aim it at that credential's hosts."""
    spec = find(request.app[SETTINGS].credentials, name)
    if spec is None or not spec.allows(request[TENANT]):
        message = "no such credential is granted to this API token (RELAY_CREDENTIALS tenants)"
        raise ProblemError(422, "Invalid request body", message, errors=[{"field": "credential", "message": message}])
    errors = [
        {"field": field, "message": f"the credential {name!r} may not be sent to this host (its itemHosts)"}
        for field, url in (("driveItemUrl", item_url), ("action.url", action_url))
        if url is not None
        and not host_matches(URL(url.replace("{resourceId}", "x")).host or "", spec.item_host_patterns)
    ]
    if errors:
        raise ProblemError(422, "Invalid request body", "a URL is not allowed", errors=errors)


async def _credential_token(request: web.Request, name: str) -> str:
    """A token from a credential relay holds, for an action the API sends (the broker is made on first use)."""
    brokers = request.app[BROKER]
    broker = brokers.get("api")
    if broker is None:
        settings = request.app[SETTINGS]
        try:
            broker = brokers["api"] = CredentialBroker(settings.credentials, timeout=settings.request_timeout)
        except ConfigError as exc:
            raise ActionRefused(503, "Credential not usable here", str(exc)) from None
    try:
        return await broker.authorization(name)
    except CredentialError as exc:
        raise ActionRefused(503, "No token from the credential", f"{exc.reason}: {exc.detail}") from None


def _idempotency(request: web.Request, body: dict[str, Any]) -> tuple[str, str, str] | None:
    """(owner, key digest, request digest) of the Idempotency-Key header, if there is one."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 0 < len(key) <= _MAX_IDEMPOTENCY_KEY:
        raise ProblemError(400, "Bad Idempotency-Key", f"Idempotency-Key must be 1 to {_MAX_IDEMPOTENCY_KEY} chars")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return request[OWNER], _digest(key), _digest(canonical)


def _monitor_answer_allowed(request: web.Request, monitor_url: str) -> None:
    """The monitor URL Graph answered must be one relay may poll, like a registered one."""
    settings = request.app[SETTINGS]
    errors = check_destinations(
        monitor_url=monitor_url,
        callback_url=None,
        drive_item_url=None,
        monitor_hosts=settings.monitor_allowed_hosts,
        item_hosts=settings.item_allowed_hosts,
        trusted_hosts=settings.internal_hosts,
    )
    if errors:
        raise ActionRefused(502, "Unusable monitor URL", "Graph answered with a monitor URL relay may not poll")


async def _register(
    request: web.Request,
    job_id: str,
    fields: dict[str, str],
    monitor_url: str | None,
    idempotency: tuple[str, str, str] | None,
    *,
    finished: dict[str, Any] | None = None,
) -> web.Response:
    store = request.app[STORE]
    if monitor_url is not None:
        fields["monitor_host"] = URL(monitor_url).host or ""
        sealed = request.app[VAULT].seal(monitor_url)
        registered = await store.register(job_id, fields, monitor_url, sealed_url=sealed, idempotency=idempotency)
    else:  # the action finished at once: the job is born completed, with its job.completed event
        assert finished is not None
        first = finished_op({**fields, "id": job_id}, int(time.time() * 1000), finished)
        registered = await store.register(job_id, fields, None, first_op=first, idempotency=idempotency)
    if registered.view is not None:
        metrics.JOBS_REGISTERED.inc()
        return _json(registered.view, status=201, headers={"Location": f"/v1/jobs/{registered.job_id}"})
    assert idempotency is not None
    return await _earlier(request, registered, idempotency)


async def _earlier(request: web.Request, earlier: Registration, idempotency: tuple[str, str, str]) -> web.Response:
    """The answer for a registration whose Idempotency-Key was used before."""
    if earlier.digest != idempotency[2]:
        raise ProblemError(409, "Idempotency-Key reused", "this Idempotency-Key was used with a different body")
    if earlier.pending:
        raise ProblemError(
            409,
            "Registration in progress",
            "a registration with this Idempotency-Key is still starting its action; retry in a moment",
            headers={"Retry-After": "1"},
        )
    store = request.app[STORE]
    stored = await store.job(earlier.job_id)
    if stored is None:  # the earlier job has expired; its key outlived it
        raise ProblemError(409, "Idempotency-Key reused", "the job this Idempotency-Key made no longer exists")
    return _json(await store.job_view(stored), headers={"Location": f"/v1/jobs/{earlier.job_id}"})


@routes.get("/v1/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    wait = parse_wait(request)
    job: dict[str, str] | None = await owned_job(request)
    if wait is not None and job is not None:
        job = await wait_for_change(request, job, *wait)
    if job is None:
        raise ProblemError(404, "Not Found", "no such job")
    return _json(await request.app[STORE].job_view(job))


@routes.patch("/v1/jobs/{job_id}")
async def patch_job(request: web.Request) -> web.Response:
    job = await owned_job(request)
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise ProblemError(422, "Invalid request body", "the body must be a JSON object")
    patch = JobPatch.model_validate(body)
    fields: dict[str, str] = {}
    if patch.callback_url is not None:
        _destination_errors(request, callback_url=patch.callback_url)
        fields["callback_url"] = patch.callback_url
    if patch.authorization is not None:
        if not job.get("drive_item_url"):
            raise ProblemError(422, "Invalid request body", "authorization is only used with a driveItemUrl")
        fields["authorization"] = _vault(request).encrypt(patch.authorization)
    if patch.progress_interval is not None:
        fields["progress_interval"] = repr(float(patch.progress_interval))
    store = request.app[STORE]
    if await store.patch(job["id"], fields) == -1:
        raise ProblemError(409, "Job has ended", "a finished job cannot be changed")
    updated = await store.job(job["id"])
    assert updated is not None
    return _json(await store.job_view(updated))


@routes.delete("/v1/jobs/{job_id}")
async def delete_job(request: web.Request) -> web.Response:
    job = await owned_job(request)
    await request.app[STORE].cancel(job["id"])
    return web.Response(status=204)


@routes.get("/v1/jobs/{job_id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    job = await owned_job(request)
    store = request.app[STORE]
    events = [e for e in await store.events(await store.event_ids(job["id"])) if e is not None]
    return _json(
        {
            "jobId": job["id"],
            "deliveries": await store.attempts(job["id"]),
            "events": [
                {"eventId": e.id, "type": e.type, "sequence": e.seq, "state": e.state, "attempts": e.attempts}
                for e in events
            ],
        }
    )


@routes.post("/v1/jobs/{job_id}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    job = await owned_job(request)
    store = request.app[STORE]
    event_ids = await store.event_ids(job["id"])
    last = await store.event(event_ids[-1]) if event_ids else None
    if last is None or last.type not in TERMINAL_TYPES:
        raise ProblemError(409, "No terminal event", "the job has no job.completed or job.failed event yet")
    await store.redeliver(job["id"], last.id)
    return _json({"jobId": job["id"], "eventId": last.id, "type": last.type}, status=202)


@routes.get("/healthz")
async def healthz(_: web.Request) -> web.Response:
    return _json({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(request.app[REDIS].ping(), READY_TIMEOUT)
    except Exception as exc:
        raise ProblemError(503, "Not Ready", f"Redis is not reachable ({type(exc).__name__})") from None
    return _json({"status": "ready"})


@routes.get("/metrics")
async def metrics_view(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].metrics_token
    if token is not None:  # scrapers send it as a bearer token (Prometheus: authorization.credentials_file)
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            raise ProblemError(
                401,
                "Unauthorized",
                "send Authorization: Bearer <RELAY_METRICS_TOKEN>",
                headers={"WWW-Authenticate": 'Bearer realm="relay-metrics"'},
            )
    try:
        metrics.refresh_from_stats(await asyncio.wait_for(request.app[STORE].stats(), READY_TIMEOUT))
    except Exception as exc:  # Redis away: still serve the process's own counters
        log.warning("metrics: Redis gauges not refreshed", error=type(exc).__name__)
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/openapi.json")
async def openapi(_: web.Request) -> web.Response:
    return _json(openapi_document())


def _vault(request: web.Request) -> Vault:
    vault = request.app[VAULT]
    if not vault.enabled:
        raise ProblemError(
            422,
            "Cannot store authorization",
            "this relay has neither RELAY_ENCRYPTION_KEY nor RELAY_SIGNING_SECRETS to encrypt it with",
        )
    return vault


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]
