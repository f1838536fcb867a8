"""``POST /v1/jobs``: checking a registration, starting its action on Graph when asked, and storing it.

Nothing is half-registered: every check runs before anything is stored, and an action Graph refused
stores nothing (its Idempotency-Key reservation is let go).
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web
from yarl import URL

from relay import metrics
from relay.api.destinations import check_destinations
from relay.api.http import json_object, json_response, render_job
from relay.api.middlewares import OWNER, TENANT
from relay.api.problems import ProblemError
from relay.api.typedefs import BROKER, CLOCK, SESSION, SETTINGS, STORE, VAULT
from relay.api.views import job_view
from relay.config.parsing import ConfigError
from relay.config.settings import Settings
from relay.core.changes import finished_op
from relay.core.crypto import Vault
from relay.core.hosts import host_matches
from relay.core.schema import Job
from relay.credentials.broker import CredentialBroker, CredentialError
from relay.outbound.ssrf import Blocked, check_url
from relay.store.jobs import Registration

if TYPE_CHECKING:
    from relay.api.models import JobCreate

# The request models (pydantic, ~8 MiB resident with the action model) and what takes their values are imported by
# the first request that needs them, not at start: a relay serve at rest holds none (docs/performance.md, "Memory").

__all__ = ["destination_errors", "register", "vault"]

_MAX_IDEMPOTENCY_KEY = 255
Idempotency = tuple[str, str, str]  # (owner, key digest, request digest)


@functools.cache
def _job_model() -> type[JobCreate]:
    """The registration's request model, imported by the first registration and kept (an import statement run
    by every registration costs it ~1 µs)."""
    from relay.api.models import JobCreate

    return JobCreate


async def register(request: web.Request) -> web.Response:
    """``POST /v1/jobs`` (routed by relay/api/jobs.py: a coroutine less a registration than a handler calling this)."""
    body = await json_object(request)
    job = _job_model().model_validate(body)
    app = request.app  # read once: each request.app[...] is three Python calls
    settings = app[SETTINGS]
    drive_item_url = job.drive_item_url
    if job.action is not None:
        from relay.outbound.actions import action_host_allowed, derived_item_url

        if not action_host_allowed(job.action, settings.action_allowed_hosts):
            message = "the action host is not in RELAY_ACTION_ALLOWED_HOSTS"
            raise ProblemError(
                422, "Invalid request body", message, errors=[{"field": "action.url", "message": message}]
            )
        drive_item_url = drive_item_url or derived_item_url(job.action)
    action_url = job.action.url if job.action else None
    _destination_errors(settings, job.monitor_url, job.callback_url, drive_item_url, action_url)
    if job.credential is not None:
        _credential_allowed(request, job.credential, drive_item_url, action_url)
    idempotency = _idempotency(request, body)
    job_id = secrets.token_hex(16)
    fields = _fields(request, job, drive_item_url, app[VAULT], settings)
    if job.action is None:
        assert job.monitor_url is not None
        return await _store(request, app, settings, job_id, fields, job.monitor_url, idempotency)
    from relay.outbound.actions import ActionRefused, start_action

    store = app[STORE]
    _refuse_over_limit(await store.take_quota(request[OWNER], _limits(settings)))
    if idempotency is not None:  # hold the key while Graph is asked: a retry must not start a second copy
        earlier = await store.reserve(idempotency, job_id, int(settings.request_timeout) + 30)
        if earlier is not None:
            return await _earlier(request, earlier, idempotency)
    try:
        started = await start_action(
            app[SESSION],
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
        raise ProblemError(
            refused.status, refused.title, refused.detail, extra=extra, headers=refused.headers()
        ) from None
    return await _store(
        request,
        app,
        settings,
        job_id,
        fields,
        started.monitor_url,
        idempotency,
        finished=started.drive_item,
        started_action=True,
    )


def _fields(request: web.Request, job: JobCreate, drive_item_url: str | None, sealer: Vault, settings: Settings) -> Job:
    """The new job's stored fields (those at their defaults are left out: bytes per job count), made in one call."""
    values: dict[str, Any] = {"owner": request[OWNER], "callback_url": job.callback_url}
    if drive_item_url:
        values["drive_item_url"] = drive_item_url
    if job.authorization:
        values["authorization"] = sealer.encrypt(job.authorization)
    if job.credential:
        values["credential"] = job.credential
    metadata = job.metadata_json()
    if metadata is not None:
        values["metadata"] = metadata
    if job.secret:  # sealed like authorization: a receiver's key
        values["secret"] = sealer.encrypt(job.secret)
    progress_interval = job.progress_interval or settings.progress_interval
    if progress_interval:
        values["progress_interval"] = float(progress_interval)
    return Job(**values)


def tenant_limits(request: web.Request) -> tuple[int, int]:
    """(active jobs, registrations a second) the caller's token may have; none without API tokens."""
    return _limits(request.app[SETTINGS])


def _limits(settings: Settings) -> tuple[int, int]:
    if not settings.api_tokens:  # one app on loopback: no one to share with
        return 0, 0
    return settings.tenant_max_active_jobs, settings.tenant_registrations_per_second


def _refuse_over_limit(limited: str) -> None:
    if limited == "active":
        message = "this API token has RELAY_TENANT_MAX_ACTIVE_JOBS jobs running; retry when some have ended"
        raise ProblemError(429, "Too Many Active Jobs", message, headers={"Retry-After": "60"})
    if limited == "rate":
        message = "this API token registers more than RELAY_TENANT_REGISTRATIONS_PER_SECOND jobs a second"
        raise ProblemError(429, "Too Many Registrations", message, headers={"Retry-After": "1"})
    if limited == "monitor":
        message = "RELAY_MONITOR_MAX_JOBS jobs already share this monitor URL; retry when some have ended"
        raise ProblemError(
            429,
            "Too Many Jobs On This Monitor",
            message,
            headers={"Retry-After": "60"},
            errors=[{"field": "monitorUrl", "message": message}],
        )


def destination_errors(request: web.Request, *, action_url: str | None = None, **urls: str | None) -> None:
    """422 for URLs relay may not send to (checked again at request time)."""
    _destination_errors(
        request.app[SETTINGS], urls.get("monitor_url"), urls.get("callback_url"), urls.get("drive_item_url"), action_url
    )


def _destination_errors(
    settings: Settings,
    monitor_url: str | None,
    callback_url: str | None,
    drive_item_url: str | None,
    action_url: str | None,
) -> None:
    errors = check_destinations(
        monitor_url=monitor_url,
        callback_url=callback_url,
        drive_item_url=drive_item_url,
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


def _credential_allowed(request: web.Request, name: str, item_url: str | None, action_url: str | None) -> None:
    """A job may name a credential its API token is granted, and only aim it at that credential's hosts."""
    from relay.config.credentials import find  # its pydantic models: loaded by a job naming a credential, no sooner

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
    from relay.outbound.actions import ActionRefused

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


def _idempotency(request: web.Request, body: dict[str, Any]) -> Idempotency | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 0 < len(key) <= _MAX_IDEMPOTENCY_KEY:
        raise ProblemError(400, "Bad Idempotency-Key", f"Idempotency-Key must be 1 to {_MAX_IDEMPOTENCY_KEY} chars")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return request[OWNER], _digest(key), _digest(canonical)


def _monitor_answer_allowed(request: web.Request, monitor_url: str) -> None:
    """The monitor URL Graph answered must be one relay may poll, like a registered one."""
    from relay.outbound.actions import ActionRefused

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
        reason = errors[0]["message"]
        raise ActionRefused(
            502, "Unusable monitor URL", f"Graph answered with a monitor URL relay may not poll: {reason}"
        )


async def _store(
    request: web.Request,
    app: web.Application,
    settings: Settings,
    job_id: str,
    fields: Job,
    monitor_url: str | None,
    idempotency: Idempotency | None,
    *,
    finished: dict[str, Any] | None = None,
    started_action: bool = False,
) -> web.Response:
    store = app[STORE]
    # an action took its share of the limits before it was started (a refusal now would leave its copy untracked)
    limits = (0, 0) if started_action else _limits(settings)
    if monitor_url is not None:
        fields.monitor_host = URL(monitor_url).host or ""
        sealed = app[VAULT].seal(monitor_url)
        registered = await store.register(
            job_id,
            fields,
            monitor_url,
            sealed_url=sealed,
            idempotency=idempotency,
            limits=limits,
            max_monitor_jobs=0 if started_action else settings.monitor_max_jobs,
        )
    else:  # the action finished at once: the job is born completed, with its job.completed event
        assert finished is not None
        now_ms = int(app[CLOCK].now() * 1000)  # Redis' clock, as the job's createdDateTime
        first = finished_op(Job.from_hash(job_id, fields.fields), now_ms, finished)
        registered = await store.register(job_id, fields, None, first_op=first, idempotency=idempotency, limits=limits)
    _refuse_over_limit(registered.limited)
    if registered.job is not None:
        metrics.JOBS_REGISTERED.inc()
        # a job born completed has its job.completed waiting already: its view says so
        view = job_view(registered.job, registered.info) if monitor_url else await render_job(request, registered.job)
        return json_response(view, status=201, headers={"Location": f"/v1/jobs/{registered.job_id}"})
    assert idempotency is not None
    return await _earlier(request, registered, idempotency)


async def _earlier(request: web.Request, earlier: Registration, idempotency: Idempotency) -> web.Response:
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
    stored = await request.app[STORE].job(earlier.job_id)
    if stored is None:  # the earlier job has expired; its key outlived it
        raise ProblemError(409, "Idempotency-Key reused", "the job this Idempotency-Key made no longer exists")
    return json_response(await render_job(request, stored), headers={"Location": f"/v1/jobs/{earlier.job_id}"})


def vault(request: web.Request) -> Vault:
    """The vault that seals authorization values and job secrets (the API does not start without a key)."""
    return request.app[VAULT]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]
