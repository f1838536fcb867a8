"""The OpenAPI document is valid, describes exactly the routes the app serves, and a client generated from it works."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from relay.api.app import ROUTES, create_app
from relay.api.middlewares import is_public
from relay.api.openapi import openapi_document
from relay.api.routing import documented_queries, route_paths
from relay.api.schemas import EVENT_MODELS
from relay.config.settings import Settings
from tests.helpers import Api, document_validator

MONITOR = "http://127.0.0.1:1029/monitor/4A3407B5-88FC-4504-8B21-0AABD3412717"
_METHODS = {"get", "post", "put", "patch", "delete"}


async def test_the_served_document_is_valid_openapi(api: Api) -> None:
    status, document, _ = await api.request("GET", "/openapi.json")
    assert status == 200 and document == json.loads(json.dumps(openapi_document(ROUTES)))
    validate(document)  # openapi-spec-validator: the structure and every $ref


def test_the_query_parameters_checked_are_the_documents() -> None:
    """The app checks query parameters against the route tables' paths (the document is built when first asked
    for): the same names, operation by operation, as the served document gives, and some to check."""
    checked = documented_queries(route_paths(ROUTES))
    assert checked == documented_queries(openapi_document(ROUTES)["paths"])
    assert checked[("/v1/jobs", "get")] and len(checked) == sum(
        1 for item in openapi_document(ROUTES)["paths"].values() for key in item if key != "parameters"
    )


def test_every_reference_in_the_document_resolves() -> None:
    """Every $ref, followed in the document; and the answers' check (tests/helpers.py) fails on one that is not."""
    document = openapi_document(ROUTES)
    resolver = Registry().with_resource("urn:doc", Resource.from_contents(document, DRAFT202012)).resolver("urn:doc")
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(document)))
    assert len(refs) >= 20
    for ref in refs:
        resolver.lookup(ref)  # raises Unresolvable
    dangling = document_validator({"type": "array", "items": {"$ref": "#/components/schemas/JobView"}})
    with pytest.raises(Unresolvable, match="JobView"):
        dangling.validate([{}])


def test_the_apps_routes_are_the_documents_paths(settings: Settings) -> None:
    app = create_app(settings)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"  # aiohttp answers HEAD beside every GET
    }
    documented = {
        (method, path)
        for path, item in openapi_document(ROUTES)["paths"].items()
        for method in item
        if method in _METHODS
    }
    assert served == documented


def test_operations_without_a_token_are_the_paths_the_middleware_lets_through() -> None:
    for path, item in openapi_document(ROUTES)["paths"].items():
        concrete = path.replace("{job_id}", "0" * 32).replace("{name}", "app.js")
        for method in _METHODS & set(item):
            assert (item[method].get("security") == []) == is_public(concrete), f"{method} {path}"


def test_each_event_is_described_by_its_model() -> None:
    hooks = openapi_document(ROUTES)["webhooks"]
    assert set(hooks) == {event_type.value for event_type in EVENT_MODELS}
    for event_type, model in EVENT_MODELS.items():
        description = hooks[event_type.value]["post"]["description"]
        assert description and description == model.__doc__ == model.model_json_schema()["description"]


# -- a client generated from the document, used against a running relay ------------------------------


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """``openapi-python-client`` (dev extra) generates a package from the document into a temporary folder."""
    generator = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    assert generator is not None, "openapi-python-client comes with the dev extra"
    root = tmp_path_factory.mktemp("client")
    spec = root / "openapi.json"
    spec.write_text(json.dumps(openapi_document(ROUTES)))
    config = root / "config.json"
    config.write_text(json.dumps({"post_hooks": []}))  # no ruff over the generated code: it is only imported
    args = ["generate", "--path", str(spec), "--output-path", str(root / "relay_client"), "--meta", "none"]
    done = subprocess.run(  # noqa: S603 (the generator of this environment, on a file this test wrote)
        [generator, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "Error" not in done.stdout, done.stdout + done.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("relay_client")
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name == "relay_client" or name.startswith("relay_client.")]:
            del sys.modules[name]


def _op(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.default.{name}")


def _model(package: ModuleType, name: str) -> Any:
    return getattr(importlib.import_module(f"{package.__name__}.models"), name)


async def test_a_client_generated_from_the_document_drives_relay(client_package: ModuleType, api: Api) -> None:
    pkg = client_package
    client = pkg.Client(base_url=api.base, raise_on_unexpected_status=True)
    create = _model(pkg, "JobCreate")(
        monitor_url=MONITOR,
        callback_url="http://127.0.0.1:1029/hook",
        metadata=_model(pkg, "JobCreateMetadataType0").from_dict({"order": "A-1"}),
    )
    async with client as c:
        created = await _op(pkg, "create_job").asyncio_detailed(client=c, body=create, idempotency_key="gen-1")
        assert created.status_code == 201
        job = created.parsed
        assert job.status.value == "notStarted" and job.metadata.to_dict() == {"order": "A-1"}

        page = await _op(pkg, "list_jobs").asyncio(client=c, limit=10)
        assert [j.id for j in page.jobs] == [job.id]  # JobPage's items: the reference the document once lost

        patched = await _op(pkg, "patch_job").asyncio(
            job.id, client=c, body=_model(pkg, "JobPatch")(progress_interval=5)
        )
        assert patched.progress_interval == 5.0

        deliveries = await _op(pkg, "list_deliveries").asyncio(job.id, client=c)
        assert deliveries.job_id == job.id and deliveries.deliveries == []

        assert (await _op(pkg, "delete_job").asyncio_detailed(job.id, client=c)).status_code == 204
        cancelled = await _op(pkg, "get_job").asyncio(job.id, client=c)
        assert cancelled.status.value == "cancelled"

        refused = await _op(pkg, "create_job").asyncio_detailed(
            client=c, body=_model(pkg, "JobCreate")(callback_url="ftp://nowhere", monitor_url=MONITOR)
        )
        assert refused.status_code == 422 and refused.parsed.errors[0].field == "callbackUrl"
