"""The simulated Agent Control Center: routes, shapes and auth as in seed 004, and its world."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from watcher.sources.fields import parse_timespan
from watcher.status import ACC_JOB_CODES, ACC_RUN_CODES
from watcher_sim import AccWorld, make_acc_app
from watcher_sim.acc import acc_time, timespan
from watcher_sim.acc_model import (
    AGENT_FIELDS,
    DELIVERY,
    FAILED,
    FAILURE,
    JOB_FAILED,
    JOB_FIELDS,
    JOB_IN_PROGRESS,
    JOB_SUCCEEDED,
    JOB_WITH_FAILURE,
    RUN_FIELDS,
    RUNNING,
    STARTING,
    STOPPED,
    SUCCEEDED,
)
from watcher_sim.statuses import ACC_JOB_NAMES, ACC_RUN_NAMES

from .conftest import FakeClock

TOKEN = "sim-acc-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PATH = "sequentum/Test2/quick"
LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}\+10:00$")

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def acc(clock: FakeClock) -> AccWorld:
    return AccWorld(now=clock)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, acc: AccWorld) -> TestClient[Any, Any]:
    return await aiohttp_client(make_acc_app(acc))


async def get(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    resp = await client.get(path, headers=AUTH)
    assert resp.status == status, await resp.text()
    return await resp.json() if resp.content_type == "application/json" else await resp.read()


def test_status_tables_are_the_seeds_in_the_simulator_and_the_product() -> None:
    runs = ["Never Run", "Starting", "Running", "Delivery", "Succeeded", "Failed", "Stopped",
            "Failure"]  # fmt: skip
    jobs = ["Never Run", "In Progress", "In Progress With Failure", "Succeeded", "Failure",
            "Failed"]  # fmt: skip
    assert [ACC_RUN_NAMES[c] for c in range(8)] == runs == [ACC_RUN_CODES[c][0] for c in range(8)]
    assert [ACC_JOB_NAMES[c] for c in range(6)] == jobs == [ACC_JOB_CODES[c][0] for c in range(6)]


def test_times_and_timespans_are_written_like_the_seed() -> None:
    when = datetime(2019, 5, 21, 3, 52, 14, 302012, tzinfo=UTC)
    assert acc_time(when, timedelta(hours=10)) == "2019-05-21T13:52:14.3020120+10:00"
    assert timespan(8.9677836) == "00:00:08.9677836"
    assert timespan(93784.5) == "1.02:03:04.5000000"
    assert parse_timespan(timespan(3723.25)) == pytest.approx(3723.25)


async def test_without_a_valid_token_the_answer_is_401(client, acc) -> None:
    acc.add_agent(PATH)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"ApiKey {TOKEN}"}):
        resp = await client.get(f"/api/agent?agentPath={PATH}", headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert await resp.read() == b""


async def test_agent_by_path(client, acc) -> None:
    agent = acc.add_agent(PATH, description="quick test agent")
    body = await get(client, "/api/agent?agentPath=Sequentum/Test2/Quick")
    assert list(body) == list(AGENT_FIELDS)
    assert body == {
        "agentId": agent.agentId,
        "name": "quick",
        "directoryId": agent.directoryId,
        "description": "quick test agent",
    }
    assert await get(client, "/api/agent?agentPath=nope/x", 404) == {
        "message": "Agent nope/x not found."
    }
    assert await get(client, "/api/agent", 400) == {"message": "agentPath is required."}


async def test_history_and_run_details(client, acc, clock) -> None:
    agent = acc.add_agent(PATH)
    first = acc.add_run(agent.agentId, SUCCEEDED)
    clock.advance(60)
    second = acc.add_run(agent.agentId, RUNNING)
    runs = await get(client, f"/api/agent/{agent.agentId}/history?count=5")
    assert [r["agentRunHistoryId"] for r in runs] == [
        second.agentRunHistoryId,
        first.agentRunHistoryId,
    ]
    assert list(runs[0]) == list(RUN_FIELDS)
    done = runs[1]
    assert (done["status"], done["statusMessage"]) == (SUCCEEDED, "Completed")
    assert LOCAL_TIME.match(done["startTime"]) and LOCAL_TIME.match(done["lastUpdated"])
    assert done["runTime"] == "00:00:00.0000000" and done["logPath"].startswith("quick-")
    assert runs[0]["endTime"] is None and runs[0]["runTime"] is None
    assert len(await get(client, f"/api/agent/{agent.agentId}/history?count=1")) == 1
    assert await get(client, f"/api/run/{first.agentRunHistoryId}") == done
    assert (await get(client, "/api/agent/unknown/history", 404))["message"].startswith("Agent")


async def test_history_without_messages(client, acc) -> None:
    agent = acc.add_agent(PATH)
    run = acc.add_run(agent.agentId, FAILED, message="Proxy connection refused")
    acc.history_messages = False
    (listed,) = await get(client, f"/api/agent/{agent.agentId}/history")
    assert listed["statusMessage"] is None
    details = await get(client, f"/api/run/{run.agentRunHistoryId}")
    assert details["statusMessage"] == "Proxy connection refused"


async def test_start_runs_through_its_statuses(client, acc, clock) -> None:
    agent = acc.add_agent(PATH)
    resp = await client.post(f"/api/agent/{agent.agentId}/cluster/start", headers=AUTH, json={})
    (run_id,) = (await resp.json())["agentRunHistoryIds"]
    seen = []
    for _ in range(8):
        seen.append((await get(client, f"/api/run/{run_id}"))["status"])
        clock.advance(acc.tick)
        acc.step()
    statuses = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
    assert statuses[:2] == [STARTING, RUNNING] and statuses[-1] in (
        SUCCEEDED,
        FAILED,
        FAILURE,
        STOPPED,
    )
    resp = await client.post(f"/api/agent/cluster/start?agentPath={PATH}", headers=AUTH)
    assert len((await resp.json())["agentRunHistoryIds"]) == 1


async def test_each_fate_ends_where_it_says(acc, clock) -> None:
    agent = acc.add_agent(PATH)
    runs = {
        fate: acc.start_run(agent.agentId, fate)
        for fate in ("success", "failed", "failure", "stopped")
    }
    clock.advance(10 * acc.tick)
    acc.step()
    assert {f: r.status for f, r in runs.items()} == {
        "success": SUCCEEDED, "failed": FAILED, "failure": FAILURE, "stopped": STOPPED,
    }  # fmt: skip
    assert all(r.endTime and r.runTime for r in runs.values())
    assert runs["failed"].errors >= 1 and runs["success"].dataCount > 0


async def test_restart_and_retry(client, acc, clock) -> None:
    agent = acc.add_agent(PATH)
    run = acc.add_run(agent.agentId, FAILED)
    resp = await client.post(f"/api/run/{run.agentRunHistoryId}/restart", headers=AUTH)
    assert (await resp.json())["status"] == STARTING
    resp = await client.post(f"/api/run/{run.agentRunHistoryId}/restart", headers=AUTH)
    assert resp.status == 400  # still running
    clock.advance(5 * acc.tick)
    acc.step()
    assert run.status == SUCCEEDED
    retry = f"/api/run/{run.agentRunHistoryId}/retry?RunMethod="
    assert (await client.post(retry + "Sideways", headers=AUTH)).status == 400
    assert (await client.post(retry + "ContinueAndRetryErrors", headers=AUTH)).status == 200


async def test_log_and_backup_are_zip_files(client, acc) -> None:
    agent = acc.add_agent(PATH)
    run = acc.add_run(agent.agentId, STARTING)
    acc.set_status(run.agentRunHistoryId, SUCCEEDED)
    log = zipfile.ZipFile(io.BytesIO(await get(client, f"/api/run/{run.agentRunHistoryId}/log")))
    assert log.namelist() == [run.logPath]
    assert b"Status: Succeeded" in log.read(run.logPath or "")
    data = zipfile.ZipFile(
        io.BytesIO(await get(client, f"/api/run/{run.agentRunHistoryId}/backup"))
    )
    assert data.read("quick.csv").decode().count("\n") == run.dataCount + 1


async def test_jobs(client, acc, clock) -> None:
    agent = acc.add_agent(PATH)
    resp = await client.post(f"/api/job/{agent.agentId}/start", headers=AUTH, json={})
    started = await resp.json()
    assert started["jobRunId"] == 1
    job = await get(client, f"/api/job/run/{started['agentJobHistoryId']}")
    assert list(job) == list(JOB_FIELDS)
    assert (job["status"], job["totalRunCount"], job["completedRunCount"]) == (
        JOB_IN_PROGRESS,
        1,
        0,
    )
    clock.advance(10 * acc.tick)
    acc.step()
    (job,) = await get(client, f"/api/job/{agent.agentId}/history?count=1")
    assert job["status"] in (JOB_SUCCEEDED, 4, JOB_FAILED) and job["completedRunCount"] == 1
    assert job["totalDataCount"] >= 0 and LOCAL_TIME.match(job["endTime"])
    runs = await get(client, f"/api/agent/{agent.agentId}/run/1/history")
    assert [r["runId"] for r in runs] == [1]
    resp = await client.post(f"/api/job/{agent.agentId}/status", headers=AUTH, json={"status": 5})
    assert resp.status == 200
    assert (await get(client, f"/api/job/run/{started['agentJobHistoryId']}"))["status"] == 5
    resp = await client.post(f"/api/job/{agent.agentId}/status", headers=AUTH, json={"status": 9})
    assert resp.status == 400
    logs = zipfile.ZipFile(
        io.BytesIO(await get(client, f"/api/job/run/{job['agentJobHistoryId']}/logs"))
    )
    assert len(logs.namelist()) == 1
    backup = await get(client, f"/api/job/run/{job['agentJobHistoryId']}/backup")
    assert zipfile.ZipFile(io.BytesIO(backup)).namelist()


def test_a_job_warns_while_a_run_has_failed_and_another_runs(acc, clock) -> None:
    agent = acc.add_agent(PATH)
    job = acc.start_job(agent.agentId, ("failed", "success"))
    statuses = [job.status]
    for _ in range(8):
        clock.advance(acc.tick)
        acc.step()
        statuses.append(job.status)
    assert [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]] == [
        JOB_IN_PROGRESS,
        JOB_WITH_FAILURE,
        4,  # Failure: one of two runs failed
    ]


def test_replace_agent_gives_a_new_guid(acc) -> None:
    old = acc.add_agent(PATH)
    acc.add_run(old.agentId, SUCCEEDED)
    new = acc.replace_agent(PATH)
    assert new.agentId != old.agentId and acc.agent_at(PATH) is new
    assert acc.history(new.agentId) == []
    with pytest.raises(LookupError):
        acc.history(old.agentId)


async def test_faults_apply_before_auth_in_the_acc_shape(client, acc) -> None:
    acc.inject("/api/agent", kind="http", status=500)
    resp = await client.get("/api/agent?agentPath=x/y")
    assert resp.status == 500
    assert (await resp.json())["message"].startswith("The service is temporarily unavailable")
    agent = acc.add_agent(PATH)
    acc.add_run(agent.agentId, DELIVERY)
    acc.inject(f"/api/agent/{agent.agentId}/history", kind="truncated")
    resp = await client.get(f"/api/agent/{agent.agentId}/history", headers=AUTH)
    body = await resp.read()
    assert resp.status == 200 and body.startswith(b"[{") and not body.endswith(b"]")
    assert acc.requests[-1] == ("GET", f"/api/agent/{agent.agentId}/history")


def test_demo_finishes_every_way_within_15_seconds_and_is_deterministic() -> None:
    def run(seed: int) -> tuple[list[tuple[str, int, str | None]], list[int]]:
        clock = FakeClock()
        start = clock()
        world = AccWorld.demo(seed=seed, now=clock)
        for _ in range(30):  # 15 s at the default tick of 1.5 s
            clock.advance(0.5)
            world.step()
        new = [r for r in world.runs.values() if r.created and r.created >= start]
        new.sort(key=lambda r: (r.created, r.agentRunHistoryId))
        runs = [(world.agents[r.agentId].path, r.status, r.statusMessage) for r in new]
        return runs, [j.status for j in world.jobs.values()]

    (runs, jobs), again = run(3), run(3)
    assert (runs, jobs) == again
    assert run(4) != again
    assert {SUCCEEDED, FAILED, STOPPED, FAILURE} <= {status for _, status, _ in runs}
    assert jobs[0] == 4  # the demo job: one run failed while the other ran, then Failure
