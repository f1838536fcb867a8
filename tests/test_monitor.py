"""Classification of every monitor response form in the seeds and the SPEC's field reports."""

from __future__ import annotations

import json

import pytest

from relay.monitor import Kind, classify, job_status

JSON = {"Content-Type": "application/json"}


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_in_progress_202() -> None:
    r = classify(202, JSON, body(operation="ItemCopy", percentageComplete=27.8, status="inProgress"))
    assert (r.kind, r.status, r.percentage, r.operation) == (Kind.PROGRESS, "inProgress", 27.8, "ItemCopy")


def test_onedrive_303_with_resource_id() -> None:
    r = classify(
        303,
        {"Location": "https://x/items/OTHER"},
        body(percentageComplete=100.0, resourceId="01ABC", status="completed"),
    )
    assert (r.kind, r.resource_id, r.percentage) == (Kind.COMPLETED, "01ABC", 100.0)


def test_303_with_only_location() -> None:
    r = classify(303, {"Location": "https://graph.microsoft.com/v1.0/drives/b!x/items/01XYZ?select=id"}, b"")
    assert (r.kind, r.resource_id) == (Kind.COMPLETED, "01XYZ")


@pytest.mark.parametrize("code", [200, 202])
def test_graph_beta_completed_status(code: int) -> None:
    r = classify(code, JSON, body(status="completed", percentageComplete=100.0, resourceId="01B"))
    assert (r.kind, r.resource_id) == (Kind.COMPLETED, "01B")


def test_200_with_drive_item_body_is_completion_carrying_the_item() -> None:
    item = {"id": "01ITEM", "name": "Copy of LargeFolder1", "folder": {"childCount": 3}, "size": 12019}
    r = classify(200, JSON, json.dumps(item).encode())
    assert (r.kind, r.resource_id, r.drive_item) == (Kind.COMPLETED, "01ITEM", item)


@pytest.mark.parametrize("status", ["failed", "deleteFailed", "cancelled"])
def test_failure_statuses_carry_error_code(status: str) -> None:
    r = classify(202, JSON, body(status=status, errorCode="AccessDenied_X", statusDescription="denied"))
    assert (r.kind, r.error_code, r.status_description) == (Kind.FAILED, "AccessDenied_X", "denied")
    assert job_status(r.kind, r.status) == "failed"


def test_500_with_a_valid_status_body_counts_as_that_status() -> None:
    r = classify(500, JSON, body(status="inProgress", percentageComplete=50))
    assert (r.kind, r.percentage) == (Kind.PROGRESS, 50.0)


@pytest.mark.parametrize("code", [404, 410])
def test_gone(code: int) -> None:
    assert classify(code, JSON, body(error={"code": "itemNotFound"})).kind is Kind.GONE


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_transient_errors_retry_and_keep_retry_after(code: int) -> None:
    r = classify(code, {"Retry-After": "7"}, b"busy")
    assert (r.kind, r.retry_after) == (Kind.RETRY, "7")


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>junk</html>",
        b"[1,2]",
        b'{"hello": 1}',
        b"",
        b'{"status": 5}',
        b'{"status": "inProgress", "percentageComplete": "x"}',
    ],
)
def test_junk_is_invalid(raw: bytes) -> None:
    assert classify(200, {}, raw).kind is Kind.INVALID


def test_oversized_body_is_invalid() -> None:
    assert classify(202, JSON, b"{}", too_large=True).kind is Kind.INVALID


def test_unknown_status_is_progress_not_a_crash() -> None:
    r = classify(202, JSON, body(status="somethingNew", percentageComplete=10))
    assert r.kind is Kind.PROGRESS and job_status(r.kind, r.status) == "inProgress"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("notStarted", "notStarted"),
        ("waiting", "notStarted"),
        ("updating", "inProgress"),
        ("deletePending", "inProgress"),
    ],
)
def test_job_status_mapping(status: str, expected: str) -> None:
    assert job_status(Kind.PROGRESS, status) == expected


def test_percentage_is_clamped() -> None:
    assert classify(202, JSON, body(status="inProgress", percentageComplete=150)).percentage == 100.0
    assert classify(202, JSON, body(status="inProgress", percentageComplete=-3)).percentage == 0.0
