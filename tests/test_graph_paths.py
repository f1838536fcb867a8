"""The path shapes relay sends a Graph token to (relay/core/graph_paths.py): pure checks, no I/O."""

from __future__ import annotations

import pytest

from relay.core.graph_paths import (
    ITEM_URL_RULE,
    InvalidItemId,
    action_path,
    fill_item_url,
    item_url_problem,
    upload_body_problem,
)

GRAPH = "https://graph.microsoft.com"


def test_the_action_and_drive_item_shapes_relay_sends() -> None:
    for path in (
        "/v1.0/me/drive/items/01A/copy",
        "/beta/me/drive/items/01A/copy?@microsoft.graph.conflictBehavior=rename",
        "/v1.0/drives/b!x/items/01A/copy",
        "/v1.0/sites/contoso.sharepoint.com,1,2/drive/items/01A/copy",
        "/v1.0/sites/contoso.sharepoint.com:/sites/Marketing:/drive/items/01A/copy",
        "/v1.0/users/someone@contoso.com/drive/items/01A/copy",
        "/v1.0/groups/g1/drives/b!x/items/01A/copy",
        "/v1.0/me/drive/root:/Documents/Report%20Q3.docx:/copy",
        "/v1.0/me/drive/items/01A:/sub/file.txt:/copy",
        "/v1.0/drive/items/D4648F06C91D9D3D!54927/copy",
        "/_api/v2.0/drives/b!x/items/01A/copy",
        "/v1.0/me/drive/items/root/children",
        "/v1.0/me/drive/root:/Uploads:/children",
    ):
        assert not isinstance(action_path(GRAPH + path), str), path
    assert item_url_problem(f"{GRAPH}/v1.0/sites/s1/drive/items/{{resourceId}}?$select=id,name") is None
    assert item_url_problem("https://api.onedrive.com/v1.0/drive/items/{resourceId}") is None
    assert item_url_problem(f"{GRAPH}/v1.0/me/drive/root/children/{{resourceId}}") == ITEM_URL_RULE
    filled = fill_item_url(f"{GRAPH}/v1.0/me/drive/items/{{resourceId}}", "D4648F06C91D9D3D!54927?x#y")
    assert filled == f"{GRAPH}/v1.0/me/drive/items/D4648F06C91D9D3D%2154927%3Fx%23y", "fully percent-encoded"


@pytest.mark.parametrize("resource_id", ["..", ".", "", "a/b", "a\\b", "01\u0000", "01\u009b", "x" * 513])
def test_an_id_that_is_no_drive_item_id_is_refused(resource_id: str) -> None:
    with pytest.raises(InvalidItemId) as refused:
        fill_item_url(f"{GRAPH}/v1.0/me/drive/items/{{resourceId}}", resource_id)
    assert len(resource_id) < 3 or resource_id not in str(refused.value), "the message does not repeat the id"


def test_an_upload_from_url_is_recognised_by_its_body_and_prefer_header() -> None:
    body = {"@microsoft.graph.sourceUrl": "https://example.org/a.iso", "name": "a.iso", "file": {}}
    assert upload_body_problem(body, {"prefer": "respond-async"}) is None
    assert upload_body_problem(body, {}) == (
        "action.headers",
        "an upload from URL needs the header Prefer: respond-async",
    )
    assert upload_body_problem({**body, "@microsoft.graph.sourceUrl": "file:///etc/passwd"}, {})[0] == "action.body"  # type: ignore[index]
    assert upload_body_problem({"name": "x", "folder": {}}, {"Prefer": "respond-async"})[0] == "action.body"  # type: ignore[index]
