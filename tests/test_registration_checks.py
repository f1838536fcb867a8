"""What would reach a header, a host name or Redis is checked at registration: 422 naming the field.

Each of these was taken with 201 (or answered 500) and then failed again at every lease of the job's poll,
resolution or delivery (issue 26, "input that wedges a job forever").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from relay.config.settings import Settings
from tests.helpers import Api, running_api, with_settings

MONITOR = "http://127.0.0.1:1029/monitor/1"
CALLBACK = "http://127.0.0.1:1029/h"
ITEM = "http://127.0.0.1:1029/v1.0/me/drive/items/{resourceId}"
COPY = "http://127.0.0.1:1029/v1.0/me/drive/items/01ABC/copy"
LONG_LABEL = "a" * 64
CONTROLS = ["Bearer a\r\nX-Evil: 1", "Bearer a\nb", "Bearer a\x00b", "Bearer \x01", "Bearer a\x7f", "Bearer\ta"]
BAD_HOSTS = [
    f"{LONG_LABEL}.example.com",  # a label over 63 characters: UnicodeError at every connect
    ".".join(["a" * 60] * 5),  # 304 characters: over 253
    "xn--zz.example.com",  # an xn-- label that is not IDNA
    "a..example.com",  # an empty label
]


async def _refused(api: Api, body: dict[str, Any], field: str, method: str = "POST", path: str = "/v1/jobs") -> str:
    status, problem, resp = await api.request(method, path, json=body)
    assert status == 422, (status, problem)
    assert resp.content_type == "application/problem+json"
    fields = [e["field"] for e in problem["errors"]]
    assert field in fields, problem
    return str(problem)


@pytest.mark.parametrize("value", CONTROLS)
async def test_a_control_character_in_authorization_is_a_422(api: Api, value: str) -> None:
    body = {"monitorUrl": MONITOR, "callbackUrl": CALLBACK, "driveItemUrl": ITEM, "authorization": value}
    text = await _refused(api, body, "authorization")
    assert value not in text  # the problem never echoes the value (a token)
    job = await api.create(monitorUrl=MONITOR, callbackUrl=CALLBACK, driveItemUrl=ITEM, authorization="Bearer ok")
    await _refused(api, {"authorization": value}, "authorization", "PATCH", f"/v1/jobs/{job['id']}")


@pytest.mark.parametrize("value", ["Bearer a\x00b", "Bearer a\r\nb"])
async def test_a_control_character_in_an_actions_authorization_is_a_422_not_a_500(api: Api, value: str) -> None:
    body = {"action": {"url": COPY, "body": {"name": "x"}}, "callbackUrl": CALLBACK, "authorization": value}
    await _refused(api, body, "authorization")


@pytest.mark.parametrize("value", ["respond-async\x01", "respond-async\r\nX-Evil: 1", "a\x00", "a\x7f"])
async def test_a_control_character_in_an_action_header_is_a_422_not_a_500(api: Api, value: str) -> None:
    action = {"url": COPY, "body": {"name": "x"}, "headers": {"Prefer": value}}
    body = {"action": action, "callbackUrl": CALLBACK, "authorization": "Bearer ok"}
    await _refused(api, body, "action.headers")


@pytest.fixture
async def open_api(settings: Settings, redis: Redis) -> AsyncIterator[Api]:
    """An API whose allowlists take any host: what refuses a host name is the name check, not the allowlist."""
    permissive = with_settings(settings, monitor_allowed_hosts=("*",), item_allowed_hosts=("*",))
    async with running_api(permissive.replace(action_allowed_hosts=("*",))) as client:
        yield client


@pytest.mark.parametrize("host", BAD_HOSTS)
@pytest.mark.parametrize("field", ["callbackUrl", "monitorUrl", "driveItemUrl"])
async def test_a_host_that_is_no_dns_name_is_a_422(open_api: Api, host: str, field: str) -> None:
    api = open_api
    urls = {
        "callbackUrl": f"http://{host}/h",
        "monitorUrl": f"http://{host}/monitor/1",
        "driveItemUrl": f"http://{host}/v1.0/me/drive/items/{{resourceId}}",
    }
    body = {"monitorUrl": MONITOR, "callbackUrl": CALLBACK, field: urls[field]}
    await _refused(api, body, field)


@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_a_host_that_is_no_dns_name_is_a_422_in_a_patch_and_an_action(open_api: Api, host: str) -> None:
    api = open_api
    job = await api.create(monitorUrl=MONITOR, callbackUrl=CALLBACK)
    await _refused(api, {"callbackUrl": f"http://{host}/h"}, "callbackUrl", "PATCH", f"/v1/jobs/{job['id']}")
    action = {"url": f"http://{host}/v1.0/me/drive/items/01ABC/copy", "body": {"name": "x"}}
    await _refused(api, {"action": action, "callbackUrl": CALLBACK, "authorization": "Bearer ok"}, "action.url")


async def test_the_longest_dns_names_are_still_taken(open_api: Api) -> None:
    host = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 63-character labels, 253 characters: valid
    assert len(host) == 253
    for field, url in (
        ("callbackUrl", f"https://{host}/h"),
        ("monitorUrl", f"https://{host}/m"),
        ("callbackUrl", "https://bücher.example/h"),
    ):
        status, body, _ = await open_api.request(
            "POST", "/v1/jobs", json={"monitorUrl": MONITOR, "callbackUrl": CALLBACK, field: url}
        )
        assert status == 201, body


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'"metadata": {"a": "x\\ud800"}', "metadata.a"),
        (b'"metadata": {"a": ["ok", "\\udfff"]}', "metadata.a.1"),
        (b'"metadata": {"k\\ud800": 1}', "metadata.k\ufffd"),
        (b'"authorization": "Bearer \\ud800", "driveItemUrl": "' + ITEM.encode() + b'"', "authorization"),
        (b'"secret": "whsec_\\udc00"', "secret"),
    ],
)
async def test_a_lone_surrogate_in_any_string_is_a_422(api: Api, raw: bytes, field: str) -> None:
    body = b'{"monitorUrl": "' + MONITOR.encode() + b'", "callbackUrl": "' + CALLBACK.encode() + b'", ' + raw + b"}"
    status, problem, resp = await api.request(
        "POST", "/v1/jobs", data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 422 and resp.content_type == "application/problem+json", (status, problem)
    assert problem["errors"][0]["field"] == field


async def test_a_surrogate_pair_is_text_and_taken(api: Api) -> None:
    body = b'{"monitorUrl": "' + MONITOR.encode() + b'", "callbackUrl": "' + CALLBACK.encode() + b'", '
    body += b'"metadata": {"a": "\\ud83d\\ude00"}}'
    status, job, _ = await api.request("POST", "/v1/jobs", data=body, headers={"Content-Type": "application/json"})
    assert status == 201 and job["metadata"] == {"a": "\U0001f600"}
