"""The simulated ACC's job schedules (seed 004) and its retry methods, and the automation-runs
retry (seed 003), each recorded in the request log as tests need to assert it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from watcher_sim import AccWorld, AutomationWorld, make_acc_app, make_automation_app
from watcher_sim.acc_model import FAILED, SCHEDULE_FIELDS, STARTING, SUCCEEDED
from watcher_sim.statuses import AccScheduleStatus

from .conftest import FakeClock

AUTH = {"Authorization": "Bearer sim-acc-token"}
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def acc(clock: FakeClock) -> AccWorld:
    return AccWorld(now=clock)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, acc: AccWorld) -> TestClient[Any, Any]:
    return await aiohttp_client(make_acc_app(acc))


async def call(
    client: TestClient[Any, Any], method: str, path: str, status: int = 200, **kw: Any
) -> Any:
    resp = await client.request(method, path, headers=AUTH, **kw)
    assert resp.status == status, await resp.text()
    return await resp.json() if resp.content_type == "application/json" else None


def advance(world: AccWorld, clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    world.step()


# --------------------------------------------------------------------- schedules


async def test_a_schedule_starts_jobs_and_shows_how_the_last_one_went(client, acc, clock):
    agent = acc.add_agent("sequentum/Demo/quick")
    schedule = acc.add_schedule(agent.agentId, "*/30 * * * *", fates=("failed",))
    assert schedule.nextRunTime == T0  # 12:00 is on the half hour
    (shown,) = await call(client, "GET", f"/api/job/{agent.agentId}/schedules")
    assert list(shown) == list(SCHEDULE_FIELDS)
    assert shown["scheduleStatus"] == AccScheduleStatus.WAITING and shown["lastRunTime"] is None
    assert shown["cron"] == "*/30 * * * *" and shown["timeZoneId"] == "UTC"
    assert shown["nextRunTime"] == "2026-11-23T22:00:00.0000000+10:00"
    advance(acc, clock, 1)
    (job,) = acc.job_history(agent.agentId)
    (run,) = acc.job_runs(agent.agentId, job.runId)
    assert run.agentJobScheduleId == schedule.scheduleId
    (shown,) = await call(client, "GET", f"/api/job/{agent.agentId}/schedules")
    assert shown["scheduleStatus"] == AccScheduleStatus.RUNNING
    assert shown["nextRunTime"] == "2026-11-23T22:30:00.0000000+10:00"
    advance(acc, clock, 10 * acc.tick)
    (shown,) = await call(client, "GET", f"/api/job/{agent.agentId}/schedules")
    assert run.status == FAILED and shown["scheduleStatus"] == AccScheduleStatus.FAILED
    assert shown["completedTime"] is not None
    advance(acc, clock, 3600)
    assert len(acc.job_history(agent.agentId)) == 3  # 12:30 and 13:00 as well


async def test_schedules_that_are_off_or_do_not_fire_start_nothing(client, acc, clock):
    one = acc.add_agent("sequentum/Demo/one")
    two = acc.add_agent("sequentum/Demo/two")
    off = acc.add_schedule(one.agentId, "0 * * * *", start=T0 + timedelta(minutes=1))
    silent = acc.add_schedule(two.agentId, "0 * * * *", fires=False)
    await call(client, "POST", f"/api/job/schedule/{off.scheduleId}/off")
    advance(acc, clock, 2 * 3600)
    assert acc.job_history(one.agentId) == [] and acc.job_history(two.agentId) == []
    assert off.nextRunTime == silent.nextRunTime == T0 + timedelta(hours=3)
    await call(client, "POST", f"/api/job/{one.agentId}/schedules/on")
    advance(acc, clock, 3600)
    assert len(acc.job_history(one.agentId)) == 1
    await call(client, "POST", f"/api/job/{one.agentId}/schedules/off")
    assert not off.isEnabled


async def test_add_update_start_and_delete_through_the_api(client, acc, clock):
    agent = acc.add_agent("sequentum/Demo/quick")
    body = {
        "scheduleId": "b4cdc56a-2c16-4b1b-a135-b4e687f8bc95",
        "cron": "30 9 * * *",
        "sessionId": None,
        "startTime": "2026-11-23T08:00:00",
        "timeZoneId": "Australia/Sydney",
        "inputParameters": '{"par1":"2000"}',
        "logLevel": 1,
        "isWindowless": True,
        "isEnabled": True,
    }
    saved = await call(client, "POST", f"/api/job/{agent.agentId}/schedule", json=body)
    assert saved["scheduleId"] == body["scheduleId"] and saved["startTime"] == body["startTime"]
    # 09:30 in Sydney (UTC+11 in November) is 08:30 in the world's +10:00
    assert saved["nextRunTime"] == "2026-11-23T08:30:00.0000000+10:00"
    assert saved["inputParameters"] == '{"par1":"2000"}'
    updated = await call(
        client, "POST", f"/api/job/{agent.agentId}/schedule", json={**body, "cron": "0 6 * * *"}
    )
    assert updated["cron"] == "0 6 * * *"
    assert len(await call(client, "GET", f"/api/job/{agent.agentId}/schedules")) == 1
    bad = {**body, "cron": "0 0 0 1"}
    assert (
        "cron"
        in (await call(client, "POST", f"/api/job/{agent.agentId}/schedule", 400, json=bad))[
            "message"
        ]
    )
    started = await call(client, "POST", f"/api/job/schedule/{body['scheduleId']}/start")
    assert started["jobRunId"] == 1
    assert acc.calls[-1].path.endswith("/start") and acc.calls[-1].status == 200
    assert acc.calls[0].body == body
    await call(client, "DELETE", f"/api/job/schedule/{body['scheduleId']}")
    await call(client, "DELETE", f"/api/job/schedule/{body['scheduleId']}", 404)
    acc.add_schedule(agent.agentId, "0 * * * *")
    await call(client, "DELETE", f"/api/job/{agent.agentId}/schedules")
    assert await call(client, "GET", f"/api/job/{agent.agentId}/schedules") == []


# ------------------------------------------------------------------------ retry


async def test_acc_retry_methods(client, acc, clock):
    agent = acc.add_agent("sequentum/Demo/quick")
    run = acc.add_run(agent.agentId, FAILED, inputParameters='{"q":"x"}')
    path = f"/api/run/{run.agentRunHistoryId}/retry"
    continued = await call(client, "POST", f"{path}?RunMethod=ContinueAndRetryErrors")
    assert continued["agentRunHistoryId"] == run.agentRunHistoryId
    assert run.status == STARTING and run.dataCount > 0  # continues with what it had
    await call(client, "POST", f"{path}?RunMethod=Restart", 400)  # still running
    advance(acc, clock, 10 * acc.tick)
    assert run.status == SUCCEEDED
    restarted = await call(client, "POST", f"{path}?RunMethod=Restart")
    assert restarted["agentRunHistoryId"] == run.agentRunHistoryId and run.dataCount == 0
    advance(acc, clock, 10 * acc.tick)
    new = await call(client, "POST", f"{path}?RunMethod=New")
    assert new["agentRunHistoryId"] != run.agentRunHistoryId
    assert new["inputParameters"] == '{"q":"x"}' and run.status == SUCCEEDED
    default = await call(client, "POST", path)  # ContinueAndRetryErrorsRefreshAgent
    assert default["agentRunHistoryId"] == run.agentRunHistoryId
    assert [c.query.get("RunMethod") for c in acc.calls] == [
        "ContinueAndRetryErrors", "Restart", "Restart", "New", None,
    ]  # fmt: skip
    await call(client, "POST", f"{path}?RunMethod=Sideways", 400)


async def test_automation_retry_is_a_new_run(aiohttp_client, clock):
    auto = AutomationWorld(now=clock)
    auto.add_automation("invoice-sync")
    failed = auto.add_run("invoice-sync", "failed", failed_step="parse")
    client = await aiohttp_client(make_automation_app(auto))
    headers = {"X-API-Key": "sim-automation-key"}
    path = f"/api/v1/automation-runs/{failed.id}/retry"
    resp = await client.post(path, headers=headers, json={"mode": "from_step", "stepKey": "parse"})
    assert resp.status == 200
    new = await resp.json()
    assert new["id"] != failed.id and new["status"] == "pending"
    assert (new["triggerType"], new["triggerSourceId"]) == ("retry", failed.id)
    assert auto.calls[-1].body == {"mode": "from_step", "stepKey": "parse"}
    assert auto.run(failed.id).status == "failed"
