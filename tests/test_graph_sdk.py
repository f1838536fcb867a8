"""docs/graph-sdk.md's Python functions, run with the real msgraph-sdk against the Graph simulator and relay.

msgraph-sdk is an optional test dependency (``pip install -e '.[sdk]'``): without it these tests are skipped.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from markdown_it import MarkdownIt

from relay.simulator import Simulator
from tests.helpers import Api, Receiver

pytest.importorskip("msgraph", reason="msgraph-sdk is an optional test dependency: pip install -e '.[sdk]'")

from azure.core.credentials import AccessToken
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphServiceClient
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph_core import GraphClientFactory

ROOT = Path(__file__).resolve().parents[1]
DRIVE = "b!drive"
# msgraph-sdk 1.65's generated builders use kiota classes kiota 1.16 deprecates, warning as they are imported
# (GetQueryParameters, the per-builder RequestConfiguration classes): the SDK's, nothing of ours or the snippet's
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def snippet_module(tmp_path: Path) -> ModuleType:
    """The page's first Python block, as a module (exactly as written)."""
    tokens = MarkdownIt("commonmark").parse((ROOT / "docs" / "graph-sdk.md").read_text())
    code = next(t.content for t in tokens if t.type == "fence" and t.info.strip() == "python")
    path = tmp_path / "graph_sdk_snippet.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("graph_sdk_snippet", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class SimulatorToken:
    """An azure-identity async credential that hands out the simulator's token (an app uses a real one)."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("sim-token", int(time.time()) + 3600)

    async def close(self) -> None:
        return None


@pytest.fixture
async def graph(simulator: Simulator) -> AsyncIterator[GraphServiceClient]:
    """The SDK's client aimed at the simulator (kiota sends tokens over http only to loopback, to allowed hosts)."""
    auth = AzureIdentityAuthenticationProvider(
        SimulatorToken(), scopes=["https://graph.microsoft.com/.default"], allowed_hosts=["127.0.0.1"]
    )
    # the SDK wraps the client's transport in its middleware and does not pass aclose() on: close our own
    connections = httpx.AsyncHTTPTransport()
    http = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient(transport=connections))
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = f"{simulator.base_url}/v1.0"
    yield GraphServiceClient(request_adapter=adapter)
    await http.aclose()
    await connections.aclose()


async def test_a_copy_through_the_sdk_ends_in_a_verified_job_completed(
    tmp_path: Path, graph: GraphServiceClient, api: Api, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    sdk = snippet_module(tmp_path)
    monitor, item = await sdk.start_copy(
        graph, DRIVE, "01FOLDER", "01PARENT", "Copy of LargeFolder1", "rename&duration=0.5"
    )
    assert item is None and monitor is not None and monitor.startswith(simulator.base_url)
    job = await sdk.track(api.base, monitor, graph, DRIVE, "sim-token", receiver.url)
    await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    done = receiver.terminal(job["id"])
    assert done is not None and done["type"] == "job.completed", done
    assert done["data"]["driveItem"]["name"].startswith("Copy of LargeFolder1")
    assert receiver.bad_signatures == 0 and receiver.schema_errors == []


async def test_a_synchronous_copy_returns_the_item_and_no_monitor(tmp_path: Path, graph: GraphServiceClient) -> None:
    sdk = snippet_module(tmp_path)
    # the simulator's knobs ride on the action's query string, after Graph's own parameter
    monitor, item = await sdk.start_copy(
        graph, DRIVE, "01FOLDER", "01PARENT", "Report.docx", conflict="rename&answer=sync&duration=0.1"
    )
    assert monitor is None and item is not None and item.id and item.name == "Report.docx"


async def test_an_upload_from_url_sends_prefer_respond_async(
    tmp_path: Path, graph: GraphServiceClient, simulator: Simulator
) -> None:
    sdk = snippet_module(tmp_path)
    monitor = await sdk.start_upload(graph, DRIVE, "01PARENT", "https://example.com/a.bin", "a.bin")
    assert monitor.startswith(simulator.base_url)
