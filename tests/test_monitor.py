"""Classification of every monitor response form in the seeds and the SPEC's field reports."""

from __future__ import annotations

import json

import pytest

from relay.core.monitor import Kind, canonical_status, classify, job_status

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


def test_unknown_status_is_progress_of_an_unknown_kind_keeping_the_word() -> None:
    r = classify(202, JSON, body(status="somethingNew", percentageComplete=10))
    assert r.kind is Kind.PROGRESS and job_status(r.kind, r.status) == "inProgress"
    assert r.unknown_status and r.status == "somethingNew" and canonical_status(r.status) is None


@pytest.mark.parametrize("word", ["completed", "Completed", "COMPLETED", "succeeded", "Succeeded", "success"])
def test_completion_words_are_matched_case_insensitively_with_synonyms(word: str) -> None:
    r = classify(200, JSON, body(status=word, resourceId="01R"))
    assert (r.kind, r.resource_id, r.status, r.percentage) == (Kind.COMPLETED, "01R", word, 100.0)


@pytest.mark.parametrize(
    ("word", "meaning"), [("Failed", "failed"), ("canceled", "cancelled"), ("DELETEFAILED", "deleteFailed")]
)
def test_failure_words_are_matched_case_insensitively_with_synonyms(word: str, meaning: str) -> None:
    r = classify(200, JSON, body(status=word))
    assert r.kind is Kind.FAILED and canonical_status(r.status) == meaning and r.status == word


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("running", "inProgress"),
        ("InProgress", "inProgress"),
        ("NotStarted", "notStarted"),
        ("cancelPending", "inProgress"),
    ],
)
def test_running_words_are_known_progress(word: str, expected: str) -> None:
    r = classify(200, JSON, body(status=word))
    assert r.kind is Kind.PROGRESS and not r.unknown_status and job_status(r.kind, r.status) == expected


def test_failure_reason_from_an_error_object_keeps_code_message_and_target() -> None:
    error = {"code": "nameAlreadyExists", "message": "exists", "target": "Copy of A.docx"}
    r = classify(200, JSON, body(status="failed", error=error))
    assert (r.kind, r.error_code, r.error_message, r.error_target) == (
        Kind.FAILED,
        "nameAlreadyExists",
        "exists",
        "Copy of A.docx",
    )


def test_error_code_field_wins_over_the_error_object() -> None:
    r = classify(200, JSON, body(status="failed", errorCode="AccessDenied_X", error={"code": "accessDenied"}))
    assert r.error_code == "AccessDenied_X"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"resourceLocation": "https://graph.microsoft.com/v1.0/drives/b!x/items/01NEW"}, "01NEW"),
        ({"resourceLocation": "https://graph.microsoft.com/v1.0/drives('b!x')/items('6A12%21457')"}, "6A12!457"),
        ({"resourceLocation": "https://graph.microsoft.com/v1.0/storage/archives/987"}, "987"),
        ({"resourceLocation": "https://x/items/01LOC", "resourceId": "01ID"}, "01ID"),
    ],
)
def test_resource_id_from_resource_location(fields: dict[str, str], expected: str) -> None:
    r = classify(200, JSON, body(status="succeeded", **fields))
    assert (r.kind, r.resource_id) == (Kind.COMPLETED, expected)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/v1.0/drives('me')/items('6A1237F04038E20A!457')", "6A1237F04038E20A!457"),
        ("/v1.0/drives('me')/items('6A1237F04038E20A%21457')", "6A1237F04038E20A!457"),
        ("https://graph.microsoft.com/v1.0/drives/b!x/items/6A1237F04038E20A%21457?select=id", "6A1237F04038E20A!457"),
        ("/v1.0/drives('me')/items('it''s')", "it's"),
        ("/v1.0/drives('me')/items('')", None),
        ("https://graph.microsoft.com/v1.0/storage/archives/987", None),
    ],
)
def test_resource_id_from_location_in_either_path_form(location: str, expected: str | None) -> None:
    r = classify(303, {"Location": location}, b"")
    assert (r.kind, r.resource_id) == (Kind.COMPLETED, expected)


def test_a_5xx_saying_the_operation_does_not_exist_ends_as_gone() -> None:
    r = classify(500, JSON, body(error={"code": "operationNotFound", "message": "The operation does not exist."}))
    assert (r.kind, r.error_code, r.error_message) == (Kind.GONE, "operationNotFound", "The operation does not exist.")


@pytest.mark.parametrize(
    ("code", "error"), [(500, "nameAlreadyExists"), (403, "accessDenied"), (507, "QuotaLimitReached")]
)
def test_an_error_answer_that_cannot_change_ends_as_failed(code: int, error: str) -> None:
    r = classify(code, JSON, body(error={"code": error, "message": "m"}))
    assert (r.kind, r.error_code, r.http_status) == (Kind.FAILED, error, code)


@pytest.mark.parametrize("error", ["generalException", "serviceNotAvailable", "activityLimitReached", "UnknownError"])
def test_a_5xx_with_a_transient_graph_error_is_retried(error: str) -> None:
    assert classify(503, JSON, body(error={"code": error})).kind is Kind.RETRY


def test_a_429_is_retried_whatever_its_error_says() -> None:
    assert classify(429, JSON, body(error={"code": "accessDenied"})).kind is Kind.RETRY


def test_gone_keeps_the_error_the_404_carried() -> None:
    r = classify(404, JSON, body(error={"code": "itemNotFound", "message": "gone"}))
    assert (r.kind, r.error_code, r.error_message) == (Kind.GONE, "itemNotFound", "gone")


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


def test_the_percentage_and_description_in_every_spelling_graph_publishes() -> None:
    # Graph beta attackSimulationOperation (api-reference/beta/api/attacksimulationoperation-get.md at 3ba14a8d)
    attack = {
        "id": "2f5548d1-0dd8-4cc8-9de0-e0d6ec7ea3dc",
        "tenantId": "2f5548d1-0dd8-4cc8-9de0-e0d6ec7ea3ss",
        "statusDetail": "Creating new simulation",
        "createdDateTime": "2022-01-12T05:27:18.7957961Z",
        "lastActionDateTime": "2022-01-12T05:27:18.7957961Z",
        "type": "createSimulation",
        "status": "notStarted",
        "percentageCompleted": 0,
    }
    r = classify(200, JSON, body(**attack))
    assert (r.kind, r.status, r.percentage) == (Kind.PROGRESS, "notStarted", 0.0)
    assert (r.status_description, r.operation) == ("Creating new simulation", "createSimulation")
    # a v2.1 operation writes percentComplete beside percentageComplete (Graph beta driveItem copy, example 2)
    v21 = classify(200, JSON, body(status="inProgress", percentComplete=42))
    assert v21.percentage == 42.0
    both = classify(200, JSON, body(status="inProgress", percentageComplete=40, percentComplete=99))
    assert both.percentage == 40.0  # AsyncJobStatus's own name first
    assert classify(200, JSON, body(percentComplete="x", status="inProgress")).kind is Kind.INVALID
    # statusDescription (AsyncJobStatus) before statusDetail (longRunningOperation)
    desc = classify(200, JSON, body(status="running", statusDescription="a", statusDetail="b"))
    assert desc.status_description == "a"
