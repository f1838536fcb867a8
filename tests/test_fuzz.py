"""Fuzzing: schemathesis against the served OpenAPI document, hypothesis properties of the pure parts."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from relay.api.app import ROUTES
from relay.api.openapi import openapi_document
from relay.core.backoff import parse_retry_after, poll_delay
from relay.core.monitor import Kind, classify
from relay.core.retry import delivery_delay
from relay.store.embedded import EmbeddedRedis
from tests.helpers import ENCRYPTION_KEY, SECRET, free_port, relay_env, start_relay, wait_http

TOKEN = "fuzz-token"
# the Server-Sent Events streams stay open by design (tests/test_live.py covers them)
schema = schemathesis.openapi.from_dict(openapi_document(ROUTES)).exclude(
    path=["/v1/stream", "/v1/jobs/{job_id}/events"]
)


@schema.auth()
class BearerToken:
    """Schemathesis applies the token itself, so it can also leave it out on purpose (expecting 401)."""

    def get(self, case: schemathesis.Case, ctx: object) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case, data: str, ctx: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
def api_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    port = free_port()
    env = relay_env(
        REDIS_URL=redis_server.url,
        RELAY_PORT=str(port),
        RELAY_SIGNING_SECRETS=SECRET,
        RELAY_ENCRYPTION_KEY=ENCRYPTION_KEY,
        RELAY_API_TOKENS=TOKEN,
        RELAY_LOG_FORMAT="json",
    )
    proc = start_relay("serve", env)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz", proc)
    yield base
    proc.terminate()
    proc.wait(20)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_errors_and_matches_its_schema(case: schemathesis.Case, api_url: str) -> None:
    # every other check runs (no 5xx, status codes, content types and bodies as documented, invalid data
    # rejected). positive_data_acceptance is left out: a schema-valid URL can still be refused on purpose
    # (a host outside RELAY_MONITOR_ALLOWED_HOSTS, a private address), which no JSON schema can say.
    response = case.call(base_url=api_url)
    if response.status_code == 413:
        # an over-long field can push the body past 64 KiB: refused as documented, but schemathesis'
        # list of "rejection" codes lacks 413, so check this answer here instead
        assert response.headers["content-type"][0].startswith("application/problem+json")
        return
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


_status_bodies = st.fixed_dictionaries(
    {},
    optional={
        "status": st.one_of(
            st.sampled_from(
                [
                    "notStarted",
                    "inProgress",
                    "completed",
                    "failed",
                    "cancelled",
                    "waiting",
                    "updating",
                    "deletePending",
                    "deleteFailed",
                    "Completed",
                    "succeeded",
                    "canceled",
                    "running",
                    "unknownFutureValue",
                ]
            ),
            st.text(),
            st.integers(),
        ),
        "percentageComplete": st.one_of(
            st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(), st.none()
        ),
        "operation": st.one_of(st.text(), st.integers()),
        "resourceId": st.one_of(st.text(), st.none(), st.integers()),
        "errorCode": st.text(),
        "statusDescription": st.one_of(st.text(), st.integers()),
        "resourceLocation": st.one_of(st.text(), st.integers(), st.just("/drives('me')/items('A%21b')")),
        "error": st.one_of(
            st.text(),
            st.fixed_dictionaries(
                {"code": st.one_of(st.text(), st.integers()), "message": st.text(), "target": st.text()}
            ),
        ),
        "id": st.text(),
        "name": st.text(),
    },
)


@given(
    status=st.integers(100, 599),
    body=st.one_of(st.binary(max_size=200), _status_bodies.map(lambda d: json.dumps(d).encode())),
    location=st.one_of(st.none(), st.text(max_size=50)),
    retry_after=st.one_of(st.none(), st.text(max_size=30)),
)
def test_classify_never_raises_and_percentages_are_sane(
    status: int, body: bytes, location: str | None, retry_after: str | None
) -> None:
    headers = {k: v for k, v in (("Location", location), ("Retry-After", retry_after)) if v is not None}
    result = classify(status, headers, body)
    assert isinstance(result.kind, Kind)
    if result.percentage is not None:
        assert 0.0 <= result.percentage <= 100.0
    if result.kind is Kind.COMPLETED:
        assert result.percentage == 100.0
    for text in (result.resource_id, result.error_code, result.error_message, result.error_target):
        assert text is None or (isinstance(text, str) and text)
    parse_retry_after(retry_after)


@given(
    streak=st.integers(-5, 10_000),
    initial=st.floats(0.01, 100),
    extra=st.floats(0, 1000),
    seed=st.integers(),
)
def test_poll_delay_stays_within_bounds(streak: int, initial: float, extra: float, seed: int) -> None:
    maximum = initial + extra
    delay = poll_delay(streak, initial, maximum, random.Random(seed))
    assert initial / 2 - 1e-9 <= delay <= maximum + 1e-9


@given(attempts=st.integers(0, 20), schedule=st.lists(st.floats(0, 1e5), min_size=1, max_size=12), seed=st.integers())
def test_delivery_delay_follows_the_schedule(attempts: int, schedule: list[float], seed: int) -> None:
    delay = delivery_delay(attempts, tuple(schedule), random.Random(seed))
    if attempts >= len(schedule):
        assert delay is None
    else:
        assert delay is not None and 0.8 * schedule[attempts] - 1e-6 <= delay <= 1.2 * schedule[attempts] + 1e-6


# -- the raw request body of POST /v1/jobs and PATCH /v1/jobs/{id} ----------------------------

_VALID = {
    "monitorUrl": "https://api.onedrive.com/monitor/4A3407B5",
    "callbackUrl": "https://example.com/hooks/relay",
    "metadata": {"requestId": "r-42", "tags": ["a", 1, 2.5, None, True]},
}


def _nest(depth: int, opener: str) -> bytes:
    closer = "]" if opener == "[" else "}"
    inner = opener if opener == "[" else '{"a":'
    return (inner * depth + "1" * (opener == "{") + closer * depth).encode()


def _mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, byte in flips:
        if out:
            out[position % len(out)] = byte
    return bytes(out)


_raw_bodies = st.one_of(
    st.binary(max_size=512),
    st.builds(_nest, st.integers(1, 4000), st.sampled_from(["[", "{"])).map(
        lambda nested: (
            b'{"monitorUrl":"https://api.onedrive.com/m","callbackUrl":"https://e.com/h","metadata":{"x":'
            + nested
            + b"}}"
        )
    ),
    st.builds(
        _mutate,
        st.just(json.dumps(_VALID).encode()),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    ),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b'"\\ud800"', b"12345678901234567890123"]).map(
        lambda n: (
            b'{"monitorUrl":"https://api.onedrive.com/m","callbackUrl":"https://e.com/h","metadata":{"n":' + n + b"}}"
        )
    ),
)


def _send(method: str, url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - a loopback URL of the test's own API
        url,
        data=body,
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return resp.status, resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", "")


@pytest.fixture(scope="module")
def job_url(api_url: str) -> str:
    status, _ = _send("POST", api_url + "/v1/jobs", json.dumps(_VALID).encode())
    assert status == 201
    request = urllib.request.Request(api_url + "/v1/jobs", headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        return f"{api_url}/v1/jobs/{json.load(resp)['jobs'][0]['id']}"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_raw_bodies, patch=st.booleans())
def test_no_request_body_gets_a_5xx(api_url: str, job_url: str, body: bytes, patch: bool) -> None:
    status, content_type = _send("PATCH", job_url, body) if patch else _send("POST", api_url + "/v1/jobs", body)
    assert status < 500, (status, body[:200])
    if status >= 400:
        assert content_type.startswith("application/problem+json")
