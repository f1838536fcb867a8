"""Jobs that name a credential relay holds: granted per API tenant, tokens only to the credential's hosts.

The worker gets its token from the real azure-identity library, asking the token endpoint double over TLS;
the Graph simulator accepts exactly the tokens the double issued.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from redis.asyncio import Redis

from relay.config.credentials import load_credentials
from relay.config.settings import Settings
from relay.simulator import Simulator
from tests.helpers import BETA_SECRET, Receiver, Trap, running_api, running_worker, two_tenants, with_settings
from tests.helpers import SECRET as SIGNING_SECRET
from tests.token_double import App, TokenDouble

CLIENT_ID = "99999999-2222-3333-4444-555555555555"
SECRET = "app-only-s3cret"


@pytest.fixture
async def double(tmp_path: Path) -> AsyncIterator[tuple[TokenDouble, str]]:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = TokenDouble(ca)
    server.apps[CLIENT_ID] = App(secret=SECRET)
    await server.start()
    yield server, str(ca_file)
    await server.stop()


@pytest.fixture
def app_only(settings: Settings, double: tuple[TokenDouble, str]) -> Settings:
    server, ca_file = double
    backup = {
        "type": "clientSecret",
        "tenantId": server.tenant,
        "clientId": CLIENT_ID,
        "clientSecret": SECRET,
        "authority": server.authority,
        "caFile": ca_file,
        "tenants": ["backup"],
        "itemHosts": ["127.0.0.1"],
    }
    other = {**backup, "tenants": ["*"], "itemHosts": ["graph.microsoft.com"]}
    specs = load_credentials(json.dumps({"backup": backup, "graph-only": other}))
    return two_tenants(
        settings, tokens="backup:tok-backup,other:tok-other", secrets=f"backup:{SIGNING_SECRET},other:{BETA_SECRET}"
    ).replace(credentials=specs)


def job_body(sim: Simulator, receiver: Receiver, credential: str = "backup") -> dict[str, Any]:
    return {
        "monitorUrl": sim.create(duration=0.3).monitor_url,
        "callbackUrl": receiver.url,
        "driveItemUrl": f"{sim.base_url}/v1.0/me/drive/items/{{resourceId}}",
        "credential": credential,
    }


async def test_an_app_only_credential_resolves_the_item_with_no_token_from_the_app(
    app_only: Settings, simulator: Simulator, receiver: Receiver, double: tuple[TokenDouble, str], redis: Redis
) -> None:
    server, _ = double
    simulator.tokens.trusted.append(server.accepts)
    async with running_api(app_only) as api, running_worker(app_only):
        status, job, _ = await api.request(
            "POST", "/v1/jobs", json=job_body(simulator, receiver), headers={"Authorization": "Bearer tok-backup"}
        )
        assert status == 201, job
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    done = receiver.events(job["id"])[-1]["data"]
    assert done["driveItem"] is not None and "resolutionError" not in done
    (sent,) = simulator.item_auth_headers
    assert server.accepts(sent.removeprefix("Bearer ")), "the item request carried the credential's token"
    assert "credential" not in job and all(SECRET not in json.dumps(e) for e in receiver.events())


async def test_a_credential_named_by_a_token_it_is_not_granted_to_is_a_422(
    app_only: Settings, simulator: Simulator, receiver: Receiver, redis: Redis
) -> None:
    async with running_api(app_only) as api:
        for token, name in (("tok-other", "backup"), ("tok-backup", "nonexistent")):
            status, problem, _ = await api.request(
                "POST",
                "/v1/jobs",
                json=job_body(simulator, receiver, name),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert status == 422 and problem["errors"][0]["field"] == "credential", problem
        # granted to everyone, but its tokens may only go to graph.microsoft.com
        status, problem, _ = await api.request(
            "POST",
            "/v1/jobs",
            json=job_body(simulator, receiver, "graph-only"),
            headers={"Authorization": "Bearer tok-other"},
        )
        assert status == 422 and problem["errors"][0]["field"] == "driveItemUrl", problem


async def test_an_action_started_with_a_credential(
    app_only: Settings, simulator: Simulator, receiver: Receiver, double: tuple[TokenDouble, str], redis: Redis
) -> None:
    server, _ = double
    simulator.tokens.trusted.append(server.accepts)
    custom = with_settings(app_only, action_allowed_hosts=("127.0.0.1",))
    body = {
        "action": {"url": f"{simulator.base_url}/v1.0/me/drive/items/01A/copy?duration=0.2", "body": {"name": "x"}},
        "credential": "backup",
        "callbackUrl": receiver.url,
    }
    async with running_api(custom) as api, running_worker(custom):
        status, job, _ = await api.request(
            "POST", "/v1/jobs", json=body, headers={"Authorization": "Bearer tok-backup"}
        )
        assert status == 201, job
        await receiver.wait_for(lambda: receiver.terminal(job["id"]) is not None)
    assert receiver.events(job["id"])[-1]["data"]["driveItem"]["name"] == "x"
    assert simulator.actions == 1


async def test_a_held_credential_is_sent_only_to_the_actions_relay_tracks(
    app_only: Settings, receiver: Receiver, redis: Redis
) -> None:
    """The finding: ``action`` {url: .../v1.0/users, body} with an app-only credential made relay create a user."""
    trap = Trap()
    await trap.start()
    custom = with_settings(app_only, action_allowed_hosts=("127.0.0.1",))
    auth = {"Authorization": "Bearer tok-backup"}
    user = {"displayName": "Mallory", "accountEnabled": True, "userPrincipalName": "m@contoso.example"}
    try:
        async with running_api(custom) as api:
            for url, body in ((f"{trap.base_url}/v1.0/users", user), (f"{trap.base_url}/v1.0/me/drive/items/01A", {})):
                action = {"action": {"url": url, "body": body}, "credential": "backup", "callbackUrl": receiver.url}
                status, problem, _ = await api.request("POST", "/v1/jobs", json=action, headers=auth)
                assert status == 422 and problem["errors"][0]["field"] == "action.url", problem
            item = {
                "monitorUrl": f"{trap.base_url}/monitor/1",
                "driveItemUrl": f"{trap.base_url}/v1.0/users/{{resourceId}}",
                "credential": "backup",
                "callbackUrl": receiver.url,
            }
            status, problem, _ = await api.request("POST", "/v1/jobs", json=item, headers=auth)
            assert status == 422 and problem["errors"][0]["field"] == "driveItemUrl", problem
    finally:
        await trap.stop()
    assert trap.requests == [], "the app-only token went to a request relay does not exist to make"
