"""The rules against a Cloud that is not our simulator (`tests.plain_cloud`, written from the API
documents alone), polled as the daemon polls — every `poll_interval_active`, with the source's
default config (change hints on, the default request budget): a stuck run, a missed cron slot,
a missed platform schedule, a "success" with no records — each said once, and never again
after a restart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from watcher.app import App
from watcher.config import RuleConfig, SourceConfig

from .conftest import FakeClock, make_settings, of
from .plain_cloud import PlainCloud

KEY = "plain-key-5f3c9a"
TICK = 15.0
"""The daemon's poll job: every `poll_interval_active` (15 s by default)."""


@pytest.fixture
def cloud(clock: FakeClock) -> PlainCloud:
    return PlainCloud(now=clock, api_key=KEY)


@pytest.fixture
async def watch(
    aiohttp_server, cloud: PlainCloud, tmp_path: Path, clock: FakeClock, http
) -> Callable[..., App]:
    """An App on the plain Cloud with the given rules and the source's defaults; call again on
    the same state file for a restart."""
    server = await aiohttp_server(cloud.app(), host="127.0.0.1")
    base_url = str(server.make_url("")).rstrip("/")

    def build(*rules: RuleConfig) -> App:
        source = SourceConfig(name="cloud", kind="sequentum_cloud", base_url=base_url,
                              api_key=KEY)  # fmt: skip
        settings = make_settings(tmp_path, source)
        settings.rules = list(rules)
        return App(settings, clock=clock, http=http)

    return build


def add_agent(cloud: PlainCloud, agent_id: int, name: str, created: datetime) -> None:
    cloud.agents[agent_id] = {"id": agent_id, "name": name, "created": created}
    cloud.runs.setdefault(agent_id, [])


def add_run(
    cloud: PlainCloud,
    agent_id: int,
    run_id: int,
    status: int,
    start: datetime,
    end: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    run = {"id": run_id, "status": status, "startTime": start, "endTime": end,
           "dataCount": 0, "errorCount": 0, **fields}  # fmt: skip
    cloud.runs[agent_id].append(run)
    return run


async def run_for(app: App, clock: FakeClock, seconds: float) -> None:
    """Poll as the daemon does, one tick after another, for `seconds` of the test's clock."""
    end = clock() + timedelta(seconds=seconds)
    while clock() < end:
        clock.advance(TICK)
        report = await app.poll(app.pollers[0])
        assert report.ok, report.error_line


async def first_poll(app: App) -> None:
    report = await app.poll(app.pollers[0])
    assert report.ok, report.error_line


def at(clock: FakeClock, hours: float = 0, minutes: float = 0) -> datetime:
    return clock() + timedelta(hours=hours, minutes=minutes)


def zulu(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the stand-in itself ------------------------------------------------------------------


async def test_the_plain_cloud_asks_for_its_key_pages_and_sorts(
    aiohttp_client, cloud: PlainCloud, clock: FakeClock
) -> None:
    for agent_id in range(1, 151):  # agent n: created n days ago, last active n minutes ago
        add_agent(cloud, agent_id, f"a{agent_id}", at(clock, hours=-24 * agent_id))
        add_run(cloud, agent_id, agent_id, 10, at(clock, minutes=-agent_id - 5),
                at(clock, minutes=-agent_id))  # fmt: skip
    add_agent(cloud, 151, "never ran", at(clock))
    client = await aiohttp_client(cloud.app())
    assert (await client.get("/api/v1/agent/all")).status == 401
    wrong = {"Authorization": "Bearer " + KEY}
    assert (await client.get("/api/v1/agent/all", headers=wrong)).status == 401
    key = {"Authorization": "ApiKey " + KEY}

    async def page(index: int, column: str, order: int) -> tuple[list[int], int]:
        params = {"pageIndex": index, "recordsPerPage": 100, "sortColumn": column,
                  "sortOrder": order}  # fmt: skip
        answer = await (await client.get("/api/v1/agent/all", params=params, headers=key)).json()
        return [a["id"] for a in answer["agents"]], answer["totalRecordCount"]

    oldest_first = [*range(150, 0, -1), 151]
    assert await page(1, "created", 0) == (oldest_first[:100], 151)
    assert await page(2, "created", 0) == (oldest_first[100:], 151)
    active_first = [*range(1, 151), 151]
    assert await page(1, "lastActivity", 1) == (active_first[:100], 151)
    assert await page(2, "lastActivity", 1) == (active_first[100:], 151)
    agents = await (await client.get("/api/v1/agent/all", headers=key)).json()
    assert (agents[0]["status"], agents[0]["lastActivity"]) == (10, "2026-11-23T11:59:00.000000Z")
    assert (agents[150]["status"], agents[150]["lastActivity"]) == (None, None)
    add_run(cloud, 1, 1000, 1, at(clock))
    runs = await (await client.get("/api/v1/agent/1/runs?maxRecords=1", headers=key)).json()
    assert [(r["id"], r["status"], r["endTime"]) for r in runs] == [(1000, 1, None)]


# --- stuck runs ----------------------------------------------------------------------------


async def test_a_run_that_starts_after_the_first_poll_is_stuck_once(
    cloud: PlainCloud, watch, clock: FakeClock
) -> None:
    add_agent(cloud, 2537, "nightly", at(clock, hours=-24 * 30))
    add_run(cloud, 2537, 1, 10, at(clock, hours=-24), at(clock, hours=-23), dataCount=500)
    add_agent(cloud, 2538, "idle", at(clock, hours=-24 * 30))
    two_hours = RuleConfig(name="two-hours", max_duration="2h")
    async with watch(two_hours) as app:
        await first_poll(app)
        await run_for(app, clock, 60)
        started = clock()
        run = add_run(cloud, 2537, 2, 1, started)  # running, from now on
        await run_for(app, clock, 7200 - TICK)  # within one tick of the limit
        assert of(app, "run.stuck") == []
        await run_for(app, clock, 2 * TICK)  # the tick at exactly 2 h, and the one past it
        (stuck,) = of(app, "run.stuck")
        await run_for(app, clock, 600)
        assert len(of(app, "run.stuck")) == 1
    assert (stuck.agent_id, stuck.run_id, stuck.agent_name) == ("2537", "2", "nightly")
    assert (stuck.get("rule"), stuck.get("limit_s"), stuck.get("running_s")) == (
        "two-hours",
        7200,
        7200 + TICK,
    )
    assert stuck.started_at == started
    async with watch(two_hours) as app:  # a restart: not again
        await run_for(app, clock, 600)
        assert len(of(app, "run.stuck")) == 1
        run.update(status=10, endTime=clock(), dataCount=480)
        await run_for(app, clock, 60)
        (finished,) = [e for e in of(app, "run.finished") if e.run_id == "2"]
        assert len(of(app, "run.stuck")) == 1
    assert finished.get("was_stuck") is True


async def test_a_run_already_running_at_the_first_poll_is_stuck_once(
    cloud: PlainCloud, watch, clock: FakeClock
) -> None:
    add_agent(cloud, 2537, "nightly", at(clock, hours=-24 * 30))
    add_run(cloud, 2537, 1, 10, at(clock, hours=-24), at(clock, hours=-23), dataCount=500)
    started = at(clock, hours=-1)
    add_run(cloud, 2537, 2, 1, started)  # an hour in when watcher first looks
    two_hours = RuleConfig(name="two-hours", max_duration="2h")
    async with watch(two_hours) as app:
        await first_poll(app)  # its baseline: history, no event
        assert of(app, "run.stuck") == []
        await run_for(app, clock, 3600 - TICK)
        assert of(app, "run.stuck") == []
        await run_for(app, clock, 2 * TICK)
        (stuck,) = of(app, "run.stuck")
        await run_for(app, clock, 600)
        assert len(of(app, "run.stuck")) == 1
    assert (stuck.agent_id, stuck.run_id) == ("2537", "2")
    assert stuck.get("running_s") == 7200 + TICK and stuck.started_at == started
    async with watch(two_hours) as app:  # a restart: not again
        await run_for(app, clock, 600)
        assert len(of(app, "run.stuck")) == 1


# --- missed schedules ----------------------------------------------------------------------


async def test_each_cron_slot_without_a_run_is_missed_once(
    cloud: PlainCloud, watch, clock: FakeClock
) -> None:
    clock.t = clock.t.replace(minute=30)  # 12:30
    add_agent(cloud, 2537, "hourly", at(clock, hours=-24 * 30))
    add_run(cloud, 2537, 1, 10, at(clock, hours=-2), at(clock, hours=-1.9), dataCount=50)
    add_agent(cloud, 2538, "busy", at(clock, hours=-24 * 30))
    hourly = RuleConfig(name="hourly", agents=["hourly"], schedule="0 * * * *", grace="10m")
    async with watch(hourly) as app:
        await first_poll(app)
        await run_for(app, clock, 3600)  # 13:30: the 13:00 slot passed its grace
        add_run(cloud, 2538, 2, 1, clock())  # another agent moves; this one does not
        await run_for(app, clock, 1800 + 9 * 60 + 45)  # 14:09:45, within the 14:00 grace
        assert len(of(app, "agent.missed_schedule")) == 1
        await run_for(app, clock, 60 * 60 + 5 * 60 + 15)  # 15:15
        missed = of(app, "agent.missed_schedule")
        assert sorted(e.get("expected_at") for e in missed) == [
            "2026-11-23T13:00:00Z",
            "2026-11-23T14:00:00Z",
            "2026-11-23T15:00:00Z",
        ]
        await run_for(app, clock, 47 * 60)  # 16:02: a run starts for the 16:00 slot
        run = add_run(cloud, 2537, 3, 1, clock())
        await run_for(app, clock, 15 * 60)
        run.update(status=10, endTime=clock(), dataCount=50)
        await run_for(app, clock, 15 * 60)  # 16:32
        assert len(of(app, "agent.missed_schedule")) == 3
    assert {(e.agent_id, e.agent_name, e.get("rule")) for e in missed} == {
        ("2537", "hourly", "hourly")
    }
    news = "/api/v1/agent/all?pageIndex=1&recordsPerPage=100&sortColumn=lastActivity&sortOrder=1"
    assert news in cloud.asked  # the change hints, most recently active first
    async with watch(hourly) as app:  # a restart: no slot is said again
        await run_for(app, clock, 15 * 60)
        assert len(of(app, "agent.missed_schedule")) == 3


async def test_a_platform_schedule_that_passes_without_a_run_is_missed_once(
    cloud: PlainCloud, watch, clock: FakeClock
) -> None:
    one = at(clock, hours=1)  # 13:00
    for agent_id, name, enabled in ((10, "nightly", True), (11, "paused", False),
                                    (12, "on-time", True)):  # fmt: skip
        add_agent(cloud, agent_id, name, at(clock, hours=-24 * 30))
        add_run(cloud, agent_id, agent_id * 100, 10, at(clock, hours=-24), at(clock, hours=-23))
        cloud.schedules.append({"scheduleId": agent_id, "agentId": agent_id,
                                "scheduleName": f"{name} daily", "nextRunTime": one,
                                "timezone": "UTC", "isEnabled": enabled})  # fmt: skip
    platform = RuleConfig(name="platform", platform_schedules=True, grace="10m")
    async with watch(platform) as app:
        await first_poll(app)
        await run_for(app, clock, 3600 + 2 * 60)  # 13:02: on-time starts
        run = add_run(cloud, 12, 1201, 1, clock())
        await run_for(app, clock, 10 * 60)
        run.update(status=10, endTime=clock())
        await run_for(app, clock, 20 * 60)  # 13:32
        (missed,) = of(app, "agent.missed_schedule")
    assert (missed.agent_id, missed.agent_name) == ("10", "nightly")
    assert missed.get("expected_at") == zulu(one) and missed.get("rule") == "platform"
    assert "nightly daily" in missed.get("schedule")
    assert any(path.startswith("/api/v1/analytics/schedules/upcoming") for path in cloud.asked)
    async with watch(platform) as app:  # a restart: not again
        await run_for(app, clock, 15 * 60)
        assert len(of(app, "agent.missed_schedule")) == 1


# --- anomalies -----------------------------------------------------------------------------


async def test_a_success_with_no_records_after_a_thousand_a_run_is_an_anomaly(
    cloud: PlainCloud, watch, clock: FakeClock
) -> None:
    for agent_id, name in ((20, "prices"), (21, "stock")):
        add_agent(cloud, agent_id, name, at(clock, hours=-24 * 30))
        for day in range(10, 0, -1):  # 1,001 … 1,010 records a day: the median 1,005.5
            start = at(clock, hours=-24 * day)
            add_run(cloud, agent_id, 100 * agent_id + 11 - day, 10, start,
                    start + timedelta(minutes=10), dataCount=1000 + 11 - day)  # fmt: skip
    rules = (
        RuleConfig(name="some-records", agents=["prices"], min_records=1),
        RuleConfig(name="no-drop", agents=["stock"], records_drop=0.5),
    )
    async with watch(*rules) as app:
        await first_poll(app)
        await run_for(app, clock, 60)
        empty = [add_run(cloud, a, 100 * a + 11, 1, clock()) for a in (20, 21)]
        await run_for(app, clock, 5 * 60)
        for run in empty:
            run.update(status=10, endTime=clock(), dataCount=0)
        await run_for(app, clock, 60)
        for a in (20, 21):  # the next day: as usual
            start = clock()
            add_run(cloud, a, 100 * a + 12, 10, start, start + timedelta(minutes=5),
                    dataCount=990)  # fmt: skip
        clock.advance(5 * 60)
        await run_for(app, clock, 5 * 60)
        anomalies = {e.agent_name: e for e in of(app, "run.anomaly")}
    assert sorted(anomalies) == ["prices", "stock"]
    prices, stock = anomalies["prices"], anomalies["stock"]
    assert (prices.run_id, prices.get("rule"), prices.get("check")) == (
        "2011",
        "some-records",
        "min_records",
    )
    assert (prices.get("value"), prices.get("threshold")) == (0, 1)
    assert (stock.run_id, stock.get("rule"), stock.get("check")) == ("2111", "no-drop",
                                                                    "records_drop")  # fmt: skip
    assert (stock.get("value"), stock.get("threshold")) == (0, 0.5 * 1005.5)
    assert stock.get("history") == "median 1,006 of the last 10 successes"
    async with watch(*rules) as app:  # a restart: not again
        await run_for(app, clock, 5 * 60)
        assert len(of(app, "run.anomaly")) == 2
