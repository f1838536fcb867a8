"""The bench's own arithmetic: the figures it prints are only as good as these (no benchmark runs here)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.bench import costs
from tests.bench.__main__ import SECTIONS, _sections, parse
from tests.bench.idle import calls_text
from tests.bench.measure import Meter, Sample, cpu_seconds, event_loop_of, pct
from tests.bench.mix import progress_ages
from tests.bench.report import code_state


def test_progress_age_is_how_long_ago_the_newest_percentage_was_true() -> None:
    # a 10 s copy from t=100: 30% was true at t=103; the app got it at t=104 and nothing newer
    ages = progress_ages({"created": 100.0, "duration": 10.0}, [(104.0, 30.0)], step=1.0)
    # samples at 101..109: before t=104 the app knows 0% as of the start (age = time since start)
    assert ages == pytest.approx([1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])


def test_progress_age_keeps_the_highest_percentage_seen_whatever_the_arrival_order() -> None:
    seen = [(102.5, 20.0), (102.0, 40.0)]  # 40% arrived first, then a stale 20%
    ages = progress_ages({"created": 100.0, "duration": 10.0}, seen, step=1.0)
    assert ages[2] == pytest.approx(103.0 - 104.0)  # 40% is true at t=104: the app is ahead of the sample


def test_cost_per_operation_divides_the_window_cpu_by_the_operations() -> None:
    a = Sample(at=10.0, cpu={"worker": 1.0, "redis": 0.5}, busy=100, total=200)
    b = Sample(at=20.0, cpu={"worker": 3.0, "redis": 1.0}, busy=250, total=400)
    window = Meter.between(a, b)
    assert window.per_op_us("worker", 10_000) == pytest.approx(200.0)
    assert window.per_op_us("redis", 10_000) == pytest.approx(50.0)
    assert window.share("worker") == pytest.approx(0.2)
    assert window.cores_busy == pytest.approx((os.cpu_count() or 1) * 150 / 200)


def test_time_waiting_for_a_core_is_a_share_of_the_window_and_absent_when_not_sampled() -> None:
    a = Sample(at=10.0, cpu={"worker": 1.0}, busy=100, total=200, wait={"worker": 0.5})
    b = Sample(at=20.0, cpu={"worker": 9.0}, busy=250, total=400, wait={"worker": 1.5})
    window = Meter.between(a, b)
    assert window.waited("worker") == pytest.approx(0.1)
    assert "worker 80% (+10% waiting for a core)" in window.text()
    bare = Meter.between(Sample(10.0, {"client": 0.0}, 0, 1), Sample(20.0, {"client": 5.0}, 1, 2))
    assert bare.waited("client") == 0.0
    assert "waiting" not in bare.text()


def test_a_busy_process_on_a_taken_machine_waits_for_a_core() -> None:
    """Three CPU-bound processes on fewer cores: schedstat shows each waiting (one core: measured, not assumed)."""
    if not Path(f"/proc/{os.getpid()}/schedstat").exists():
        pytest.skip("no schedstat on this kernel")
    spin = "import os, time\nos.sched_setaffinity(0, {0})\nend = time.monotonic() + 1\n"
    spin += "while time.monotonic() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]  # noqa: S603
    meter = Meter({"a": procs[0].pid})
    first = meter.sample()
    time.sleep(0.6)
    window = Meter.between(first, meter.sample())
    for proc in procs:
        proc.wait()
    assert window.waited("a") > 0.2  # two spinners on one core: each waits about half the time


def test_cpu_seconds_of_this_process_grow_as_it_computes() -> None:
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert cpu_seconds(os.getpid()) > before
    assert event_loop_of(os.getpid()) in {"asyncio", "uvloop"}


def test_idle_calls_are_counted_per_second_with_the_commands_behind_them() -> None:
    per_second, text = calls_text(Counter({"evalsha": 600, "zrangebyscore": 150, "psetex": 1}), 30.0)
    assert per_second == pytest.approx(751 / 30)
    assert text.startswith("evalsha 20, zrangebyscore 5")


def test_instructions_take_rows_1_to_3_and_refuse_an_only_without_them() -> None:
    assert parse(["--instructions", "--only", "2,4"]).only == [2, 4]
    with pytest.raises(SystemExit):
        parse(["--instructions", "--only", "4"])


def test_only_takes_known_section_numbers() -> None:
    assert _sections("1,3") == [1, 3]
    assert pct([5.0, 1.0, 3.0], 0.5) == 3.0
    with pytest.raises(argparse.ArgumentTypeError):
        _sections(f"{max(SECTIONS) + 1}")
    with pytest.raises(argparse.ArgumentTypeError):
        _sections("one")


def test_every_module_the_fault_runs_and_benches_start_exists() -> None:
    # the durability bench of `make failover` still started `tests.bench_servers` after the bench was split
    import importlib.util
    import re
    from pathlib import Path

    root = Path(__file__).parent
    started = {
        name
        for path in [*root.glob("*.py"), *root.glob("bench/*.py")]
        for name in re.findall(r'"-m",\s*"([\w.]+)"', path.read_text())
    }
    assert "tests.bench.child" in started
    assert [name for name in sorted(started) if importlib.util.find_spec(name) is None] == []


def test_the_code_under_test_names_each_changed_file_whole(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)  # noqa: S603, S607

    git("init", "-q")
    for name in ("relay/a.py", "workers/b.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    (tmp_path / "relay/a.py").write_text("x = 2\n")  # porcelain: " M relay/a.py", a leading space
    (tmp_path / "workers/b.py").write_text("x = 3\n")
    text, mtimes = code_state(tmp_path)
    assert text.endswith(" + uncommitted: relay/a.py, workers/b.py")
    assert str(tmp_path / "relay/a.py") in mtimes


def test_an_edited_lua_script_counts_as_code_under_test(tmp_path: Path) -> None:
    (tmp_path / "relay/store/lua").mkdir(parents=True)
    (tmp_path / "relay/store/lua/apply_poll.lua").write_text("return 1\n")
    (tmp_path / "relay/README.txt").write_text("not code\n")
    _, mtimes = code_state(tmp_path)
    assert set(mtimes) == {str(tmp_path / "relay/store/lua/apply_poll.lua")}


def test_drift_is_the_spread_of_the_bare_rates_over_the_slowest() -> None:
    assert costs.drift([5121.0, 3573.0]) == pytest.approx(5121 / 3573 - 1)
    assert costs.drift([4000.0]) == 0.0
    assert costs.drift([]) == 0.0
    assert costs.drift([3000.0, 3300.0]) < costs.DRIFT_NOTE < costs.drift([3000.0, 3600.0])


async def test_the_floor_server_stores_each_body_in_redis_before_it_answers(redis: Any, redis_server: Any) -> None:
    from aiohttp import ClientSession
    from aiohttp.test_utils import TestServer

    from tests.bench.floors import floor_app

    server = TestServer(floor_app(redis_server.url), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as http:
            bodies = [{"monitorUrl": f"http://127.0.0.1/m/{n}"} for n in range(3)]
            answers = []
            for body in bodies:
                async with http.post(server.make_url("/v1/jobs"), json=body) as resp:
                    assert resp.status == 201
                    answers.append(await resp.json())
    finally:
        await server.close()
    stored = [json.loads(await redis.hget(f"bench:floor:{a['id']}", "body")) for a in answers]
    assert stored == bodies
    assert 0 < await redis.ttl(f"bench:floor:{answers[0]['id']}") <= 86400


async def test_the_delivery_floor_posts_every_stored_body_once_and_acknowledges_it_in_redis(
    redis: Any, redis_server: Any
) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from tests.bench.floors import OUTBOX, floor_loop, seed_outbox

    arrived: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        arrived.append(await request.read())
        return web.Response(status=500 if len(arrived) == 3 else 204)  # one refused: not acknowledged

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    bodies = [json.dumps({"n": n}) for n in range(250)]  # more than one claim of 100
    await seed_outbox(redis, bodies)
    try:
        result = await floor_loop("POST", redis_server.url, 8, url=str(server.make_url("/hook")))
    finally:
        await server.close()
    assert sorted(arrived) == sorted(b.encode() for b in bodies)
    assert result == {"ok": 249, "errors": 1, "acked": 249}
    assert await redis.zcard(OUTBOX) == 0
    assert len(await redis.keys("bench:floor:event:*")) == 1  # the refused one is kept


async def test_the_poll_floor_polls_every_stored_url_again_and_again_and_writes_each_answer_back(
    redis: Any, redis_server: Any
) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from tests.bench.floors import OUTBOX, floor_loop, seed_outbox

    polled: Counter[str] = Counter()

    async def monitor(request: web.Request) -> web.Response:
        polled[request.match_info["n"]] += 1
        return web.json_response({"status": "inProgress", "n": request.match_info["n"]})

    app = web.Application()
    app.router.add_get("/monitor/{n}", monitor)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await seed_outbox(redis, [str(server.make_url(f"/monitor/{n}")) for n in range(3)])
    try:
        result = await floor_loop("GET", redis_server.url, 4, duration=0.5)
    finally:
        await server.close()
    assert set(polled) == {"0", "1", "2"} and min(polled.values()) > 1
    assert result["errors"] == 0 and result["ok"] == result["acked"] == sum(polled.values())
    answers = [json.loads(await redis.hget(f"bench:floor:event:{n}", "answer")) for n in range(3)]
    assert answers == [{"status": "inProgress", "n": str(n)} for n in range(3)]
    assert await redis.zcard(OUTBOX) == 3  # each one due again


def test_the_parts_an_operation_cannot_skip_are_timed_on_what_relay_really_takes() -> None:
    from standardwebhooks.webhooks import Webhook

    from relay.api.models import JobCreate
    from relay.core.crypto import Vault
    from tests.bench.harness import SECRET
    from tests.bench.loadgen import padded_body
    from tests.bench.parts import delivery_calls, delivery_parts, registration_calls
    from tests.bench.register import BODY

    steps = registration_calls(BODY, SECRET, 5)
    first_body = json.loads(BODY.replace("{n}", "0"))
    assert steps["read the body"]() == first_body
    validated = steps["validate"]()
    assert isinstance(validated, JobCreate) and validated.monitor_url == first_body["monitorUrl"]
    checked = steps["check URLs"]()  # the SSRF guard and the allowlists let the loopback bench hosts through
    assert checked.callback_url == first_body["callbackUrl"]
    job, authorization, monitor_url = steps["seal two values"]()
    vault = Vault((SECRET,))
    assert authorization != job.authorization and vault.decrypt(authorization) == job.authorization
    assert monitor_url != job.monitor_url and vault.reveal(monitor_url) == job.monitor_url
    assert re.fullmatch(r"[0-9a-f]{32}", steps["make an id"]())
    assert json.loads(steps["render the answer"]())["callbackUrl"] == first_body["callbackUrl"]

    body = padded_body(619)
    assert len(body) == 619
    delivering = delivery_calls(body, SECRET)
    job_read, (event,) = delivering["read the claimed state"]()
    assert job_read is not None and event.body == body
    headers = delivering["sign"]()
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)  # what a receiver checks
    ack = delivering["build the ack"]()
    assert event.id in json.dumps(json.loads(ack))

    timed = delivery_parts(body, SECRET, rounds=20)  # the figures are of those same calls
    assert timed.keys() == delivering.keys() and all(us > 0 for us in timed.values())


def test_a_polls_inputs_reach_the_parts_process_intact(tmp_path: Path) -> None:
    """``--instructions`` hands a poll's claimed state and answer to the process that counts its parts through a
    file: every byte of the answer's body (any byte, not only UTF-8) and the state's fields come back as written."""
    from tests.bench.parts import _load_poll, save_poll

    state = {"monitor": {"url": "http://127.0.0.1:1/m", "j:abc": "1"}, "jobs": {"abc": {"status": "inProgress"}}}
    answer = (202, {"Content-Type": "application/json", "Retry-After": "1"}, bytes(range(256)) + '{"é": 1}'.encode())
    path = tmp_path / "poll.json"
    save_poll(str(path), "member-1", state, answer)
    assert _load_poll(str(path)) == ("member-1", state, answer)


async def test_the_benchs_jobs_hold_the_fields_the_api_stores(
    api: Any, redis: Any, settings: Any, simulator: Any, receiver: Any
) -> None:
    """Row 4 counts the bytes of the jobs the bench registers through Store.register: they must be the API's, field
    for field (an 'id' field the API never writes cost 64 B a job: the job hash's listpack crossed a size class)."""
    import uuid

    from relay.core.crypto import Vault
    from relay.core.schema import Job
    from relay.store import keys
    from relay.store.jobs import Store
    from tests.bench import peers

    item_url = f"{simulator.base_url}/v1.0/drives/d/items/{{resourceId}}"
    metadata = {"requestId": "r-00000001", "tenant": "contoso"}
    job = await api.create(
        monitorUrl=simulator.create(duration=30).monitor_url,
        callbackUrl=receiver.url,
        driveItemUrl=item_url,
        metadata=metadata,
    )
    through_api = await redis.hgetall(keys.job(job["id"]))

    bench_id = uuid.uuid4().hex
    vault = Vault(settings.encryption_keys)
    record = peers.job_fields(vault, receiver.url, drive_item_url=item_url, metadata=metadata)
    store = Store(redis, retention=60, job_timeout=60)
    bench_monitor = simulator.create(duration=30).monitor_url
    await peers.register(store, [(bench_id, record, bench_monitor)], seal=vault)  # the row's target: sealed
    through_bench = await redis.hgetall(keys.job(bench_id))

    # the API writes today's short names (docs/performance.md, "Memory"), none an earlier version wrote
    mkey, created = Job.name_of(lambda j: j.monitor_key), Job.name_of(lambda j: j.created)
    assert {"cb", "mk", "host", "item"} <= set(through_api)
    assert not set(through_api) & set(Job.legacy_names.values())

    # and its monitor hash holds what the API's holds: the URL sealed as relay serve seals it, and j:<id>
    api_monitor = await redis.hgetall(keys.monitor(through_api[mkey]))
    bench_monitor_hash = await redis.hgetall(keys.monitor(through_bench[mkey]))
    assert sorted(api_monitor) == sorted(["url", f"j:{job['id']}"])
    assert sorted(bench_monitor_hash) == ["j:" + bench_id, "url"]
    assert api_monitor["url"].startswith("g1.") and bench_monitor_hash["url"].startswith("g1.")
    assert "=" not in api_monitor["url"] + bench_monitor_hash["url"]  # sealed without base64 padding, both
    assert vault.reveal(bench_monitor_hash["url"]) == bench_monitor
    assert len(api_monitor["url"]) == len(vault.seal(vault.reveal(api_monitor["url"])))

    assert sorted(through_bench) == sorted(through_api)
    differ = {created, mkey}  # the registration's time and its own monitor's digest
    assert {k: v for k, v in through_bench.items() if k not in differ} == {
        k: v for k, v in through_api.items() if k not in differ
    }
