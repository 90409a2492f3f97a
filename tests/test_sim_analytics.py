"""The simulated Cloud's analytics: the organisation's run summary with its failed runs, an
agent's latest failure, and the start endpoint keeping a run's input parameters."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from watcher_sim import World, make_cloud_app
from watcher_sim.model import (
    COMPLETED,
    FAILED,
    FAILURE,
    QUEUING,
    RUNNING,
    STOPPED,
    SUCCESS,
    WAITING,
)

from .conftest import FakeClock
from .simcloud import API, KEY, ClientFactory, get_json, two_agents


@pytest.fixture
def world(clock: FakeClock) -> World:
    return two_agents(clock)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, world: World) -> TestClient[Any, Any]:
    return await aiohttp_client(make_cloud_app(world))


async def test_runs_summary_counts_and_failed_details(client, world, clock) -> None:
    old = world.add_run(2537, FAILURE, message="too old")
    clock.advance(40 * 86400)
    for status in (SUCCESS, COMPLETED, RUNNING, QUEUING, WAITING, STOPPED):
        world.add_run(2537, status)
    world.add_run(1596, COMPLETED, status_text="CompletedWithErrors")
    failure = world.add_run(1596, FAILURE, message="Timeout waiting for page to load")
    clock.advance(60)
    archived = world.add_run(2537, FAILURE)
    world.archive(2537, archived.id)
    body = await get_json(client, f"{API}/analytics/runs/summary?includeDetails=true")
    counts = {k: v for k, v in body.items() if k.endswith("Runs")}
    assert counts == {
        "totalRuns": 9, "completedRuns": 2, "failedRuns": 2, "completedWithErrorsRuns": 1,
        "runningRuns": 1, "queuedRuns": 2, "stoppedRuns": 1,
    }  # fmt: skip
    details = body["failedRunDetails"]
    assert [d["runId"] for d in details] == [archived.id, failure.id]  # not the 40-day-old one
    assert details[0]["status"] == "Failed" and details[1]["status"] == "Failure"
    assert details[1]["errorMessage"] == "Timeout waiting for page to load"
    assert details[1]["agentName"] == "amazon-prices" and details[1]["agentId"] == 1596
    assert old.id not in {d["runId"] for d in details}
    plain = await get_json(client, f"{API}/analytics/runs/summary")
    assert "failedRunDetails" not in plain and plain["totalRuns"] == 9
    everything = await get_json(client, f"{API}/analytics/runs/summary?startDate=2026-01-01")
    assert everything["failedRuns"] == 3
    failed_only = await get_json(client, f"{API}/analytics/runs/summary?status=failed")
    assert failed_only["totalRuns"] == 1
    summary = f"{API}/analytics/runs/summary"
    day = "startDate=2026-11-23&endDate=2026-11-23&includeDetails=true"
    one_day = await get_json(client, f"{summary}?{day}")
    assert [d["runId"] for d in one_day["failedRunDetails"]] == [old.id]
    await get_json(client, f"{summary}?startDate=2027-01-01&endDate=2026-01-01", 400)


async def test_latest_failure(client, world, clock) -> None:
    await get_json(client, f"{API}/analytics/agents/2537/latest-failure", 404)
    first = world.add_run(2537, FAILURE, message="Proxy connection refused")
    world.archive(2537, first.id)
    clock.advance(60)
    latest = world.add_run(2537, FAILURE, message="Element not found: div.price")
    clock.advance(60)
    world.add_run(2537, SUCCESS)
    body = await get_json(client, f"{API}/analytics/agents/2537/latest-failure")
    assert body["runId"] == latest.id and body["status"] == "Failure"
    assert body["errorMessage"] == "Element not found: div.price"
    assert body["possibleCauses"] and body["suggestedActions"]
    assert body["stats"]["errorCount"] >= 1 and body["runtimeSeconds"] is not None
    assert body["agentName"] == "steam"
    await get_json(client, f"{API}/analytics/agents/999/latest-failure", 404)
    assert world.run(2537, first.id).status == FAILED


async def test_a_started_run_keeps_its_input_parameters(client, world) -> None:
    params = {"category": "brakes", "pages": 3}
    body = {"inputParameters": params, "parallelism": 2, "logLevel": "Info"}
    resp = await client.post(f"{API}/agent/2537/start", headers=KEY, json=body)
    run = world.run(2537, (await resp.json())["id"])
    assert run.inputParameters == params and run.parallelism == 2
    as_text = {"inputParameters": '{"category": "wipers"}'}  # seed 002 also shows a string
    resp = await client.post(f"{API}/agent/1596/start", headers=KEY, json=as_text)
    assert world.run(1596, (await resp.json())["id"]).inputParameters == '{"category": "wipers"}'
    (call,) = [c for c in world.calls if c.path == f"{API}/agent/2537/start"]
    assert call.method == "POST" and call.body == body and call.status == 200
