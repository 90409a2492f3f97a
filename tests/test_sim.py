"""The simulated Sequentum Cloud: every route, auth, faults, and the world's lifecycle rules."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from watcher.status import CLOUD_CODES, cloud_status
from watcher_sim import SimFile, World, make_cloud_app, serve
from watcher_sim.model import (
    AGENT_FIELDS,
    COMPLETED,
    FAILED,
    FAILURE,
    FILE_FIELDS,
    QUEUING,
    RUN_FIELDS,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    SUCCESS,
    WAITING,
    SimConflict,
)
from watcher_sim.server import autopilot
from watcher_sim.statuses import CLOUD_FINISHED, CLOUD_NAMES

from .simcloud import API, KEY, ClientFactory, get_json, two_agents

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> datetime:
        self.t += timedelta(seconds=seconds)
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(clock: FakeClock) -> World:
    return two_agents(clock)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, world: World) -> TestClient[Any, Any]:
    return await aiohttp_client(make_cloud_app(world))


def assert_cloud_error(body: dict[str, Any], status: int) -> None:
    assert set(body) == {"statusCode", "statusDescription", "message"}
    assert body["statusCode"] == status
    assert body["message"]


# ---------------------------------------------------------------------- agents


async def test_agent_all_is_a_plain_list_with_the_seed_fields(client, world) -> None:
    agents = await get_json(client, f"{API}/agent/all")
    assert [a["id"] for a in agents] == [2537, 1596]
    assert list(agents[0]) == list(AGENT_FIELDS)
    assert agents[0]["name"] == "steam"
    assert ISO_Z.match(agents[0]["created"])


async def test_agent_all_paging_answers_a_page_object(client, world, clock) -> None:
    for i in range(3):
        clock.advance(1)
        world.add_agent(5000 + i, f"extra-{i}")
    page = await get_json(client, f"{API}/agent/all?pageIndex=1&recordsPerPage=2")
    assert page["totalRecordCount"] == 5
    assert [a["id"] for a in page["agents"]] == [2537, 1596]
    first = await get_json(client, f"{API}/agent/all?pageIndex=0&recordsPerPage=2")
    assert first == page  # 0 is accepted as the first page
    last = await get_json(client, f"{API}/agent/all?pageIndex=3&recordsPerPage=2")
    assert [a["id"] for a in last["agents"]] == [5002]
    beyond = await get_json(client, f"{API}/agent/all?pageIndex=9&recordsPerPage=2")
    assert beyond == {"agents": [], "totalRecordCount": 5}
    only_index = await get_json(client, f"{API}/agent/all?pageIndex=1")
    assert len(only_index["agents"]) == 5


async def test_agent_all_sorts_by_last_activity_descending(client, world, clock) -> None:
    clock.advance(10)
    world.add_run(1596, COMPLETED)
    clock.advance(10)
    world.add_run(2537, RUNNING)
    world.add_agent(7, "never-ran")
    query = "sortColumn=lastActivity&sortOrder=1&pageIndex=1&recordsPerPage=10"
    page = await get_json(client, f"{API}/agent/all?{query}")
    assert [a["id"] for a in page["agents"]] == [2537, 1596, 7]
    ascending = await get_json(client, f"{API}/agent/all?sortColumn=lastActivity&sortOrder=0")
    assert [a["id"] for a in ascending] == [1596, 2537, 7]


async def test_get_agent_and_its_errors(client) -> None:
    agent = await get_json(client, f"{API}/agent/1596")
    assert agent["id"] == 1596 and agent["name"] == "amazon-prices"
    assert_cloud_error(await get_json(client, f"{API}/agent/9999", 404), 404)
    assert_cloud_error(await get_json(client, f"{API}/agent/abc", 400), 400)
    assert_cloud_error(await get_json(client, f"{API}/agent/all?pageIndex=x", 400), 400)
    assert_cloud_error(await get_json(client, f"{API}/nothing/here", 404), 404)


# ------------------------------------------------------------------------ runs


async def test_runs_newest_first_with_max_records(client, world, clock) -> None:
    ids = []
    for _ in range(60):
        clock.advance(60)
        ids.append(world.add_run(2537, COMPLETED).id)
    runs = await get_json(client, f"{API}/agent/2537/runs")
    assert len(runs) == 50
    assert [r["id"] for r in runs] == ids[::-1][:50]
    three = await get_json(client, f"{API}/agent/2537/runs?maxRecords=3")
    assert [r["id"] for r in three] == ids[::-1][:3]
    assert await get_json(client, f"{API}/agent/1596/runs") == []
    assert_cloud_error(await get_json(client, f"{API}/agent/2537/runs?maxRecords=-1", 400), 400)
    assert_cloud_error(await get_json(client, f"{API}/agent/42/runs", 404), 404)


async def test_run_status_has_every_seed_field(client, world, clock) -> None:
    run = world.add_run(2537, RUNNING, run_id=22552)
    clock.advance(2.5)
    world.set_status(2537, run.id, COMPLETED)
    body = await get_json(client, f"{API}/agent/2537/run/22552/status")
    assert list(body) == list(RUN_FIELDS)
    assert body["status"] == COMPLETED and body["configId"] == 2537
    assert body["configName"] == "steam" and body["tableType"] == "run"
    for key in ("created", "startTime", "endTime"):
        assert ISO_Z.match(body[key]), body[key]
    assert body["runTimeSec"] == 3
    assert body["dataCount"] > 0 and body["exportCount"] == body["dataCount"]
    assert_cloud_error(await get_json(client, f"{API}/agent/2537/run/1/status", 404), 404)
    assert_cloud_error(await get_json(client, f"{API}/agent/1596/run/22552/status", 404), 404)
    assert_cloud_error(await get_json(client, f"{API}/agent/2537/run/x1/status", 400), 400)


async def test_statuses_as_strings(client, world) -> None:
    done = world.add_run(2537, COMPLETED)
    odd = world.add_run(2537, COMPLETED, status_text="CompletedWithErrors")
    world.status_as_string = True
    body = await get_json(client, f"{API}/agent/2537/run/{done.id}/status")
    assert body["status"] == "Completed"
    runs = await get_json(client, f"{API}/agent/2537/runs")
    assert {r["id"]: r["status"] for r in runs}[odd.id] == "CompletedWithErrors"
    assert cloud_status("CompletedWithErrors").with_errors
    world.status_as_string = False
    world.set_status(2537, done.id, FAILURE, status_text="FailedToStart")
    body = await get_json(client, f"{API}/agent/2537/run/{done.id}/status")
    assert body["status"] == "FailedToStart"
    world.set_status(2537, done.id, FAILURE)
    assert (await get_json(client, f"{API}/agent/2537/run/{done.id}/status"))["status"] == 6


async def test_start_returns_a_queuing_run(client, world) -> None:
    body = {"parallelism": 3, "parallelExport": "Separated", "isRunSynchronously": False}
    resp = await client.post(f"{API}/agent/2537/start", headers=KEY, json=body)
    assert resp.status == 200
    run = await resp.json()
    assert list(run) == list(RUN_FIELDS)
    assert run["status"] == QUEUING and run["configId"] == 2537
    assert run["startTime"] is None and run["parallelism"] == 3
    assert run["parallelExport"] == "Separated"
    assert world.run(2537, run["id"]).status == QUEUING
    empty = await client.post(f"{API}/agent/1596/start", headers=KEY)
    assert (await empty.json())["status"] == QUEUING
    bad = await client.post(f"{API}/agent/2537/start", headers=KEY, data=b"{nope")
    assert bad.status == 400
    assert (await client.post(f"{API}/agent/999/start", headers=KEY, json={})).status == 404


async def test_synchronous_start_returns_records(client, world) -> None:
    resp = await client.post(
        f"{API}/agent/2537/start", headers=KEY, json={"isRunSynchronously": True}
    )
    body = await resp.json()
    assert list(body) == ["steam"]
    assert body["steam"] and set(body["steam"][0]) == {"Name", "Url", "Price", "Qty"}
    (run,) = world.runs(2537)
    assert run.status == SUCCESS and len(run.records) == len(body["steam"])


async def test_stop_goes_stopping_then_stopped(client, world) -> None:
    run = world.add_run(2537, RUNNING)
    resp = await client.post(f"{API}/agent/2537/run/{run.id}/stop", headers=KEY)
    assert resp.status == 200
    assert (await resp.json())["status"] == STOPPING
    world.step()
    body = await get_json(client, f"{API}/agent/2537/run/{run.id}/status")
    assert body["status"] == STOPPED and body["endTime"] is not None
    again = await client.post(f"{API}/agent/2537/run/{run.id}/stop", headers=KEY)
    assert again.status == 400
    assert_cloud_error(await again.json(), 400)


async def test_files_listing_and_download(client, world) -> None:
    run = world.add_run(2537, SUCCESS)
    files = await get_json(client, f"{API}/agent/2537/run/{run.id}/files")
    assert [f["fileType"] for f in files] == [1, 6]
    assert all(list(f) == list(FILE_FIELDS) for f in files)
    csv_meta = files[0]
    assert csv_meta["name"] == "steam.csv"
    resp = await client.get(
        f"{API}/agent/2537/run/{run.id}/file/{csv_meta['id']}/download", headers=KEY
    )
    assert resp.status == 200
    assert resp.content_type == "application/octet-stream"
    assert 'filename="steam.csv"' in resp.headers["Content-Disposition"]
    data = await resp.read()
    assert len(data) == csv_meta["fileSize"]
    assert data.startswith(b'"Name","Url","Price","Qty"')
    missing = f"{API}/agent/2537/run/{run.id}/file/1/download"
    assert_cloud_error(await get_json(client, missing, 404), 404)


async def test_explicit_files_are_served_as_given(client, world) -> None:
    f = SimFile(77, "out.json", b'{"a": 1}', fileType=2)
    run = world.add_run(2537, SUCCESS, files=[f])
    files = await get_json(client, f"{API}/agent/2537/run/{run.id}/files")
    assert files == [
        {"id": 77, "regionId": None, "fileType": 2, "name": "out.json", "fileSize": 8,
         "created": None}
    ]  # fmt: skip
    resp = await client.get(f"{API}/agent/2537/run/{run.id}/file/77/download", headers=KEY)
    assert await resp.read() == b'{"a": 1}'
    pending = world.add_run(2537, QUEUING)
    assert await get_json(client, f"{API}/agent/2537/run/{pending.id}/files") == []


async def test_versions_and_restore(client, world, clock) -> None:
    clock.advance(5)
    versions = await get_json(client, f"{API}/agent/2537/versions")
    assert [v["version"] for v in versions] == [1]
    assert set(versions[0]) == {"userName", "version", "created", "comments", "fileSize"}
    resp = await client.post(
        f"{API}/agent/2537/version/1/restore", headers=KEY, json={"content": "Api restore"}
    )
    assert (await resp.json())["version"] == 2
    versions = await get_json(client, f"{API}/agent/2537/versions")
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["comments"] == "Api restore"
    assert (await get_json(client, f"{API}/agent/2537"))["version"] == 2
    gone = await client.post(f"{API}/agent/2537/version/9/restore", headers=KEY, json={})
    assert gone.status == 404


async def test_diagnostics_of_a_failed_run(client, world) -> None:
    failed = world.add_run(2537, FAILURE, message="Timeout waiting for page to load")
    path = f"{API}/analytics/agents/2537/runs/{failed.id}/diagnostics"
    diag = await get_json(client, path)
    assert set(diag) == {"status", "errorMessage", "possibleCauses", "suggestedActions", "stats"}
    assert diag["status"] == FAILURE
    assert diag["errorMessage"] == "Timeout waiting for page to load"
    assert diag["possibleCauses"] and diag["suggestedActions"]
    assert diag["stats"]["errorCount"] >= 1
    ok = world.add_run(2537, SUCCESS)
    none = f"{API}/analytics/agents/2537/runs/{ok.id}/diagnostics"
    assert_cloud_error(await get_json(client, none, 404), 404)


# ------------------------------------------------------------------------ auth


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("ApiKey sim-key", 200),
        ("apikey  sim-key", 200),
        ("Bearer sim-token", 200),
        (None, 401),
        ("ApiKey wrong", 401),
        ("Bearer sim-key", 401),
        ("Basic c2ltOmtleQ==", 401),
        ("ApiKey", 401),
    ],
)
async def test_auth(client, header: str | None, status: int) -> None:
    headers = {"Authorization": header} if header is not None else {}
    for path in (f"{API}/agent/all", f"{API}/agent/2537/runs"):
        resp = await client.get(path, headers=headers)
        assert resp.status == status
        if status == 401:
            assert_cloud_error(await resp.json(), 401)
            assert resp.headers["WWW-Authenticate"]


async def test_keys_are_configurable(client, world) -> None:
    world.api_keys = {"k2"}
    assert (await client.get(f"{API}/agent/all", headers=KEY)).status == 401
    ok = await client.get(f"{API}/agent/all", headers={"Authorization": "ApiKey k2"})
    assert ok.status == 200


# ---------------------------------------------------------------------- faults


async def test_http_fault_with_retry_after_then_recovery(client, world) -> None:
    fault = world.inject(f"{API}/agent/*/runs", status=429, headers={"Retry-After": "7"}, times=2)
    for _ in range(2):
        resp = await client.get(f"{API}/agent/2537/runs", headers=KEY)
        assert resp.status == 429 and resp.headers["Retry-After"] == "7"
        assert_cloud_error(await resp.json(), 429)
    assert (await client.get(f"{API}/agent/2537/runs", headers=KEY)).status == 200
    assert (await client.get(f"{API}/agent/all", headers=KEY)).status == 200
    assert fault.hits == 2 and fault.times == 0


async def test_http_fault_default_is_503_and_before_auth(client, world) -> None:
    world.inject()
    resp = await client.get(f"{API}/agent/all")
    assert resp.status == 503
    assert (await resp.json())["statusDescription"] == "Service Unavailable"


async def test_http_fault_with_custom_body(client, world) -> None:
    world.inject(status=502, body="Bad gateway from the load balancer")
    resp = await client.get(f"{API}/agent/all", headers=KEY)
    assert resp.status == 502 and resp.content_type == "text/plain"
    assert await resp.text() == "Bad gateway from the load balancer"


async def test_problem_fault(client, world) -> None:
    world.inject(kind="problem", status=500)
    resp = await client.get(f"{API}/agent/2537", headers=KEY)
    assert resp.status == 500
    assert resp.content_type == "application/problem+json"
    body = json.loads(await resp.text())
    assert set(body) == {"type", "title", "status", "detail"} and body["status"] == 500


async def test_html_fault(client, world) -> None:
    world.inject(kind="html")
    resp = await client.get(f"{API}/agent/all", headers=KEY)
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "<html" in await resp.text()


async def test_truncated_fault(client, world) -> None:
    world.add_run(2537, COMPLETED)
    world.inject(f"{API}/agent/2537/runs", kind="truncated")
    resp = await client.get(f"{API}/agent/2537/runs", headers=KEY)
    assert resp.status == 200 and resp.content_type == "application/json"
    text = await resp.text()
    assert text.startswith('[{"id":')
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


async def test_stall_fault(client, world) -> None:
    world.inject(kind="stall", delay=0.05)
    started = time.perf_counter()
    resp = await client.get(f"{API}/agent/all", headers=KEY)
    assert resp.status == 200 and len(await resp.json()) == 2
    assert time.perf_counter() - started >= 0.05


async def test_reset_fault(client, world) -> None:
    world.inject(kind="reset", times=-1, method="GET")
    for _ in range(2):
        with pytest.raises(aiohttp.ClientError):
            await client.get(f"{API}/agent/all", headers=KEY)
    posted = await client.post(f"{API}/agent/2537/start", headers=KEY)
    assert posted.status == 200
    world.clear_faults()
    assert (await client.get(f"{API}/agent/all", headers=KEY)).status == 200


async def test_client_session_retries_a_get_once_after_a_reset(world) -> None:
    runner, base_url = await serve(world)
    try:
        async with aiohttp.ClientSession(base_url, headers=KEY) as session:
            world.inject(f"{API}/agent/all", kind="reset", times=1)
            async with session.get(f"{API}/agent/all") as resp:
                assert resp.status == 200  # the session retried on a new connection
            assert world.requests == [("GET", f"{API}/agent/all")] * 2
            world.inject(f"{API}/agent/all", kind="reset", times=2)
            with pytest.raises(aiohttp.ClientError):
                await session.get(f"{API}/agent/all")
    finally:
        await runner.cleanup()


async def test_unknown_fault_kind_is_refused(world) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        world.inject(kind="explode")


# ---------------------------------------------------------------- observability


async def test_requests_and_bytes_are_counted(client, world) -> None:
    world.add_run(2537, COMPLETED)
    await client.get(f"{API}/agent/all", headers=KEY)
    resp = await client.get(f"{API}/agent/2537/runs?maxRecords=5", headers=KEY)
    size = len(await resp.read())
    assert world.requests == [
        ("GET", f"{API}/agent/all"),
        ("GET", f"{API}/agent/2537/runs?maxRecords=5"),
    ]
    assert world.bytes_sent > size
    world.reset_counters()
    assert world.requests == [] and world.bytes_sent == 0


async def test_latency(client, world) -> None:
    world.latency = 0.03
    started = time.perf_counter()
    await client.get(f"{API}/agent/all", headers=KEY)
    assert time.perf_counter() - started >= 0.03


# ------------------------------------------------------------------- the world


def test_run_times_follow_the_clock(world: World, clock: FakeClock) -> None:
    run = world.add_run(2537)
    assert run.created == T0 and run.startTime is None and run.status == QUEUING
    clock.advance(1)
    world.set_status(2537, run.id, WAITING)
    assert run.startTime is None  # Queuing and Waiting: accepted, not yet executing
    clock.advance(1)
    world.set_status(2537, run.id, STARTING)  # seed 001: Starting begins executing
    clock.advance(1)
    world.set_status(2537, run.id, RUNNING)
    assert run.startTime == T0 + timedelta(seconds=2) and run.endTime is None
    clock.advance(9.2)
    world.set_status(2537, run.id, SUCCESS)
    assert run.endTime == clock.t and run.runTimeSec == 11


def test_archive_rewrites_failure_to_failed(world: World, clock: FakeClock) -> None:
    run = world.add_run(2537, FAILURE)
    ended = run.endTime
    assert run.message and run.diagnostics is not None
    clock.advance(30)
    world.archive(2537, run.id)
    assert run.status == FAILED and run.endTime == ended
    assert cloud_status(run.status).outcome == cloud_status(FAILURE).outcome
    with pytest.raises(SimConflict):
        world.archive(2537, run.id)


def test_failure_restarts_in_place(world: World, clock: FakeClock) -> None:
    run = world.add_run(2537, FAILURE)
    world.restart_run(2537, run.id)
    assert run.status == STARTING and run.endTime is None
    for _ in range(6):
        clock.advance(world.tick)
        world.step()
    assert run.status == SUCCESS and run.endTime == T0 + timedelta(seconds=4 * world.tick)


async def test_remove_run_leaves_the_listing(client, world) -> None:
    keep = world.add_run(2537, COMPLETED)
    old = world.add_run(2537, COMPLETED)
    world.remove_run(2537, old.id)
    runs = await get_json(client, f"{API}/agent/2537/runs")
    assert [r["id"] for r in runs] == [keep.id]
    await get_json(client, f"{API}/agent/2537/run/{old.id}/status")  # still answers
    world.remove_run(2537, old.id, forget=True)
    await get_json(client, f"{API}/agent/2537/run/{old.id}/status", 404)


def test_fields_overrides_and_ids(world: World) -> None:
    a = world.add_agent()
    b = world.add_agent(name="named")
    assert b.id == a.id + 1 and b.name == "named"
    run = world.add_run(a.id, COMPLETED, run_id=5, dataCount=3, serverName="x")
    assert (run.id, run.dataCount, run.serverName) == (5, 3, "x")
    with pytest.raises(TypeError):
        world.add_run(a.id, nonsense=1)
    with pytest.raises(LookupError):
        world.add_run(424242)


def _finished_outcomes(world: World, clock: FakeClock, seconds: float, poll: float) -> dict:
    """Step the world every `poll` fake seconds; return {run id: [statuses seen]} of new runs."""
    seen: dict[int, list[int]] = {}
    for _ in range(int(seconds / poll)):
        clock.advance(poll)
        world.step()
        for agent_id in world.agents:
            for run in world.runs(agent_id):
                if run.created is not None and run.created > T0:
                    statuses = seen.setdefault(run.id, [])
                    if not statuses or statuses[-1] != run.status:
                        statuses.append(run.status)
    return seen


def test_demo_autopilot_finishes_every_way_within_15_seconds(clock: FakeClock) -> None:
    world = World.demo(seed=7, now=clock)
    assert {a.name for a in world.agents.values()} >= {"steam", "amazon-prices", "job-board"}
    assert all(world.runs(a) for a in world.agents)  # each with some finished history
    seen = _finished_outcomes(world, clock, 15, 0.5)
    outcomes = {cloud_status(s[-1]).outcome for s in seen.values() if s[-1] in CLOUD_FINISHED}
    assert {"success", "failure", "stopped"} <= {str(o) for o in outcomes}
    failure = next(rid for rid, s in seen.items() if FAILURE in s)
    agent_id = next(a for a in world.agents if failure in {r.id for r in world.runs(a)})
    run = world.run(agent_id, failure)
    assert run.message and run.diagnostics is not None
    stopped = next(s for s in seen.values() if s[-1] == STOPPED)
    assert STOPPING in stopped
    # later on, the Failure is archived and agents keep starting runs
    more = _finished_outcomes(world, clock, 30, 0.5)
    assert world.run(agent_id, failure).status == FAILED
    assert len(more) > len(seen)


def test_demo_has_a_run_that_finishes_between_two_polls(clock: FakeClock) -> None:
    world = World.demo(now=clock)
    seen = _finished_outcomes(world, clock, 15, world.tick)
    assert any(len(s) == 1 and s[0] in CLOUD_FINISHED for s in seen.values())


def test_demo_is_deterministic() -> None:
    def snapshot() -> list[tuple[Any, ...]]:
        clock = FakeClock()
        world = World.demo(seed=3, now=clock)
        _finished_outcomes(world, clock, 20, 0.7)
        return [
            (r.id, r.status, r.created, r.endTime, r.dataCount, r.message)
            for a in world.agents
            for r in world.runs(a)
        ]

    assert snapshot() == snapshot()


def test_bulk_builds_10000_agents_quickly(clock: FakeClock) -> None:
    started = time.perf_counter()
    world = World.bulk(agents=10_000, runs_per_agent=20, active_fraction=0.05, now=clock)
    elapsed = time.perf_counter() - started
    assert elapsed < 8, elapsed
    assert len(world.agents) == 10_000
    counts = [len(world.runs(a)) for a in world.agents]
    active = sum(1 for c in counts if c == 21)
    assert set(counts) <= {20, 21} and 300 < active < 700
    clock.advance(20 * world.tick)
    assert world.step() > 0
    still_active = [
        r for a in world.agents for r in world.runs(a)[:1] if r.status not in CLOUD_FINISHED
    ]
    assert still_active == []


async def test_status_names_are_the_seeds_and_agree_with_the_product(client, world) -> None:
    world.status_as_string = True
    for code, name in CLOUD_NAMES.items():
        run = world.add_run(1596, code)
        body = await get_json(client, f"{API}/agent/1596/run/{run.id}/status")
        assert body["status"] == name == CLOUD_CODES[code][0]


# ---------------------------------------------------------------------- server


async def test_serve_on_a_free_port_with_autopilot(clock: FakeClock) -> None:
    world = World.demo(now=clock)
    runner, base_url = await serve(world)
    task = asyncio.create_task(autopilot(world, interval=0.01))
    try:
        assert re.match(r"^http://127\.0\.0\.1:\d+$", base_url) and not base_url.endswith(":0")
        clock.advance(10 * world.tick)
        await asyncio.sleep(0.05)
        url = f"{base_url}{API}/agent/2537/runs?maxRecords=3"
        async with aiohttp.ClientSession(headers=KEY) as session, session.get(url) as resp:
            assert resp.status == 200
            runs = await resp.json()
        new = [r for r in runs if r["created"] > "2025-03-01T12:00:00"]
        assert any(r["status"] in CLOUD_FINISHED for r in new)
    finally:
        task.cancel()
        await runner.cleanup()


async def test_command_line_serves_the_demo() -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher_sim", "--port", "0", "--tick", "0.2",
        cwd=root, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        key_line = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/api/v1", first)
        assert match, first
        assert "API key: sim-key" in key_line
        async with (
            aiohttp.ClientSession(headers=KEY) as session,
            session.get(f"{match.group(1)}{API}/agent/all") as resp,
        ):
            assert resp.status == 200
            assert len(await resp.json()) == 5
    finally:
        proc.terminate()
        await proc.wait()
