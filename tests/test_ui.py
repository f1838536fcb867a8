"""The /ui dashboard in headless Chromium against a real relay, simulator, receiver and worker.

Needs Debian's ``chromium`` at /usr/bin/chromium and the ``playwright`` package (no browser download:
Playwright drives the system Chromium); ``.ci/run`` installs chromium when it is missing. Skipped with the
reason when either is missing on a developer's machine; under CI (``CI`` set) a missing browser fails.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from relay.config.settings import Settings
from relay.simulator import Simulator
from tests.helpers import Api, Receiver, running_api, with_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # a DNS-rebinding page's name: it resolves to this machine's loopback, as the attacker's DNS would make it
    "--host-resolver-rules=MAP rebound.example 127.0.0.1",
]
TOKEN = "ui-token"


def _need_browser() -> None:
    """Skip (fail under CI: the dashboard must be driven there) when the browser or playwright is missing."""
    missing = None
    if not CHROMIUM.exists():
        missing = "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
    elif importlib.util.find_spec("playwright") is None:
        missing = "needs the playwright package (pip install playwright)"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must drive the dashboard in a browser: {missing}")
        pytest.skip(missing)


@pytest.fixture
async def owned_api(settings: Settings, redis: Redis) -> AsyncIterator[Api]:
    async with running_api(with_settings(settings, api_tokens=(TOKEN,))) as client:
        yield client


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    _need_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            tab = await browser.new_page()
            tab.set_default_timeout(5000)
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.errors = errors
            yield tab
        finally:
            await browser.close()


async def test_dashboard_shows_a_job_progressing_to_completion(
    owned_api: Api, page: Any, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    await page.goto(f"{owned_api.base}/ui")
    # with RELAY_API_TOKENS set the page asks for a token before it shows anything
    await page.locator("#token-form").wait_for(state="visible")
    await page.fill("#token", TOKEN)
    await page.click("#token-form button[type=submit]")
    await page.locator("#conn[data-state=live]").wait_for()
    assert await page.evaluate("sessionStorage.getItem('relay.token')") == TOKEN

    # the job is created after the page connected: it can only arrive through the stream
    op = simulator.create(duration=2.0)
    status, job, _ = await owned_api.request(
        "POST",
        "/v1/jobs",
        json={"monitorUrl": op.monitor_url, "callbackUrl": receiver.url},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 201
    row = page.locator(f'#jobs tr[data-job-id="{job["id"]}"]')
    await row.wait_for()

    seen: list[float] = []
    deadline = time.monotonic() + 8
    while await row.get_attribute("data-status") != "completed":
        assert time.monotonic() < deadline, f"the job never showed as completed; progress seen {seen}"
        value = float(await row.locator("progress").evaluate("bar => bar.value"))
        if not seen or seen[-1] != value:
            seen.append(value)
        await page.wait_for_timeout(50)
    assert float(await row.locator("progress").evaluate("bar => bar.value")) == 100.0
    assert any(0 < v < 100 for v in seen), f"the progress bar never showed a value between 0 and 100: {seen}"
    assert seen == sorted(seen), f"the progress bar went back: {seen}"
    # plain "completed" once its job.completed is delivered (until then it says the delivery is pending)
    await page.locator(f'#jobs tr[data-job-id="{job["id"]}"][data-delivery="delivered"]').wait_for()
    assert await row.locator(".status").text_content() == "completed"

    # its deliveries show up as they happen
    await page.locator(f'#deliveries tr[data-job-id="{job["id"]}"][data-outcome="delivered"]').first.wait_for()
    assert page.errors == []


async def test_dashboard_shows_a_job_waiting_for_authorization(
    owned_api: Api, page: Any, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    await page.goto(f"{owned_api.base}/ui")
    await page.fill("#token", TOKEN)
    await page.click("#token-form button[type=submit]")
    await page.locator("#conn[data-state=live]").wait_for()
    op = simulator.create(duration=0.2)
    body = {
        "monitorUrl": op.monitor_url,
        "callbackUrl": receiver.url,
        "driveItemUrl": f"{simulator.base_url}/v1.0/me/drive/items/{{resourceId}}",
        "authorization": "Bearer long-expired",
    }
    status, job, _ = await owned_api.request(
        "POST", "/v1/jobs", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 201
    badge = page.locator(f'#jobs tr[data-job-id="{job["id"]}"] .status')
    await badge.filter(has_text="waiting for authorization").wait_for()
    assert "PATCH" in (await badge.get_attribute("title") or "")
    assert page.errors == []


async def test_the_dashboard_works_without_tokens_and_a_rebinding_page_gets_nothing(
    api: Api, page: Any, simulator: Simulator, receiver: Receiver, worker: Any
) -> None:
    """Tokenless (relay dev): the dashboard at its loopback origin lists jobs and redelivers (a same-origin
    POST); the same dashboard reached under another name, as a DNS-rebinding page would, gets 403s."""
    receiver.responder = lambda request, attempt: web.Response(status=500)
    op = simulator.create(duration=0.1)
    job = await api.create(monitorUrl=op.monitor_url, callbackUrl=receiver.url)
    await page.goto(f"{api.base}/ui")
    await page.locator("#conn[data-state=live]").wait_for()
    await page.locator(f'#jobs tr[data-job-id="{job["id"]}"]').wait_for()
    redeliver = page.locator("#dead button.redeliver:not([disabled])")
    await redeliver.first.wait_for()
    await redeliver.first.click()
    await page.locator("#message", has_text="again, with the same webhook-id").wait_for()
    assert page.errors == []

    port = api.base.rsplit(":", 1)[1]
    answer = await page.goto(f"http://rebound.example:{port}/ui")
    assert answer is not None and answer.status == 403
    status = await page.evaluate("fetch('/v1/jobs').then((r) => r.status)")
    assert status == 403, "a page under another name read the jobs"


#: the picture of the job view in docs/api.md: remade when RELAY_UPDATE_SCREENSHOTS is set (else the test takes
#: it into its own temporary directory, so a test run leaves the tree as it was)
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "dashboard-job.png"
#: ms to wait for what needs the worker (a poll, a delivery and its ack, the stream's next look): more than the
#: page's 5 s for a loaded machine
WORKER_WAIT = 20_000


async def _connect(page: Any, api: Api) -> None:
    await page.goto(f"{api.base}/ui")
    await page.fill("#token", TOKEN)
    await page.click("#token-form button[type=submit]")
    await page.locator("#conn[data-state=live]").wait_for()


async def test_the_job_view_explains_a_failed_job_and_redelivers_its_event(
    owned_api: Api,
    page: Any,
    simulator: Simulator,
    receiver: Receiver,
    settings: Settings,
    start_worker: Any,
    tmp_path: Path,
) -> None:
    down = True
    receiver.responder = lambda request, n: web.Response(status=503 if down else 204)
    await page.set_viewport_size({"width": 1100, "height": 1000})
    await _connect(page, owned_api)
    op = simulator.create(duration=0.3, outcome="failed")
    body = {"monitorUrl": op.monitor_url, "callbackUrl": receiver.url, "metadata": {"order": "A-1"}}
    status, job, _ = await owned_api.request(
        "POST", "/v1/jobs", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 201
    job_id = job["id"]
    async with start_worker(with_settings(settings, delivery_schedule=(0, 300))):
        # the list does not call a failure the app has not been told of simply "failed"
        row = page.locator(f'#jobs tr[data-job-id="{job_id}"][data-delivery="retrying"]')
        await row.wait_for(timeout=WORKER_WAIT)
        assert await row.locator(".status").text_content() == "failed · delivery retrying"
        assert "AccessDenied_CopyFailed" in (await row.locator(".status").get_attribute("title") or "")
        assert await row.locator(".id a").text_content() == job_id  # the whole id

        # search by metadata, then open the job from the results
        await page.fill("#query", "order=A-1")
        await page.click("#search button[type=submit]")
        found = page.locator(f'#results-jobs tr[data-job-id="{job_id}"]')
        await found.wait_for()
        assert await page.locator("#results-jobs tbody tr").count() == 1
        await found.locator(".id a").click()
        await page.locator(f'#detail[data-job-id="{job_id}"]').wait_for()

        failure = await page.locator('#detail-explain [data-kind="failure"]').text_content()
        assert "Failed: monitorFailed" in failure and "AccessDenied_CopyFailed" in failure
        assert "Copy failed: access denied" in failure
        delivery = await page.locator('#detail-explain [data-kind="delivery"]').text_content()
        assert "job.failed not delivered (retrying)" in delivery
        assert "HTTP 503 Service Unavailable from 127.0.0.1:" in delivery
        assert re.search(r"next attempt .*\(in [3-6] min \d+ s\)", delivery), delivery
        assert "A-1" in (await page.locator("#detail-metadata").text_content() or "")
        assert await page.locator('#detail-fields dd[data-field="callbackUrl"]').text_content() == receiver.url
        picture = SCREENSHOT if os.environ.get("RELAY_UPDATE_SCREENSHOTS") else tmp_path / SCREENSHOT.name
        await page.screenshot(path=str(picture), full_page=True)
        assert picture.stat().st_size > 10_000

        # at 420 px nothing clips the page: the tables scroll inside their boxes, and say so
        await page.set_viewport_size({"width": 420, "height": 900})
        await page.wait_for_function("document.documentElement.scrollWidth <= 420")
        events_box = page.locator("#detail-events").locator("xpath=..")
        await page.wait_for_function(
            "document.querySelector('#detail-events').parentElement.dataset.overflow === 'true'"
        )
        hint = await events_box.evaluate("box => getComputedStyle(box, '::before').content")
        assert "scroll" in hint

        # the callback is back: redeliver the job.failed event from the view, the same webhook-id arrives
        down = False
        failed_row = page.locator("#detail-events tbody tr", has_text="job.failed")
        event_id = await failed_row.get_attribute("data-event-id")
        await failed_row.locator("button.redeliver").click()
        await receiver.wait_for(lambda: [r.headers["webhook-id"] for r in receiver.received].count(event_id) == 2)
        await page.locator("#detail-status .status", has_text=re.compile(r"^failed$")).wait_for(timeout=WORKER_WAIT)
        assert await page.locator(f'#jobs tr[data-job-id="{job_id}"]').get_attribute("data-delivery") == "delivered"

    # the copy button copies the whole id; a search by id opens the job
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=owned_api.base)
    await page.locator("#detail-id button.copy").click()
    assert await page.evaluate("navigator.clipboard.readText()") == job_id
    await page.click("#home")
    await page.locator("#detail").wait_for(state="hidden")
    await page.fill("#query", job_id)
    await page.click("#search button[type=submit]")
    await page.locator(f'#detail[data-job-id="{job_id}"]').wait_for()
    assert page.errors == []
