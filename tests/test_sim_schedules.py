"""Simulated Cloud schedules: RunEvery, CRON and RunOnce schedules that start runs as the
world's clock passes their next run time, schedules that silently do not fire, archived agents'
Skipped runs, and the two endpoints that show them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from watcher_sim import World, make_cloud_app
from watcher_sim.model import SCHEDULE_FIELDS, SKIPPED
from watcher_sim.schedules import Recurrence

from .conftest import FakeClock
from .simcloud import API, ClientFactory, get_json, two_agents

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # the conftest clock's start


@pytest.fixture
def world(clock: FakeClock) -> World:
    return two_agents(clock)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, world: World) -> TestClient[Any, Any]:
    return await aiohttp_client(make_cloud_app(world))


def advance(world: World, clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    world.step()


def scheduled(world: World, agent_id: int) -> list[datetime]:
    return sorted(r.created for r in world.runs(agent_id) if r.schedule_id and r.created)


# ------------------------------------------------------------------- recurrence


def test_recurrences() -> None:
    every = Recurrence(T0, every=timedelta(minutes=15))
    assert every.first() == T0
    assert every.next_after(T0) == T0 + timedelta(minutes=15)
    assert every.next_after(T0 + timedelta(minutes=31)) == T0 + timedelta(minutes=45)
    assert every.every_count_and_period() == (15, 1)
    assert Recurrence(T0, every=timedelta(hours=2)).every_count_and_period() == (2, 2)
    assert Recurrence(T0, every=timedelta(days=14)).every_count_and_period() == (2, 4)
    once = Recurrence(T0)
    assert once.next_after(T0 - timedelta(seconds=1)) == T0 and once.next_after(T0) is None
    cron = Recurrence(T0, cron="0 9 * * *", timezone="America/New_York")
    assert cron.first() == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # 09:00 EST
    summer = Recurrence(datetime(2026, 7, 1, tzinfo=UTC), cron="0 9 * * *", timezone=cron.timezone)
    assert summer.first() == datetime(2026, 7, 1, 13, 0, tzinfo=UTC)  # 09:00 EDT
    for bad in (
        {"every": timedelta(seconds=30)},
        {"cron": "0 0 0 1"},
        {"every": timedelta(hours=1), "cron": "* * * * *"},
        {"timezone": "Mars/Olympus"},
    ):
        with pytest.raises(ValueError):
            Recurrence(T0, **bad)


# --------------------------------------------------------------------- firing


def test_a_run_every_schedule_starts_a_run_each_time(world, clock) -> None:
    schedule = world.add_schedule(2537, every=timedelta(minutes=10), fate="success")
    assert schedule.nextRunTime == T0 + timedelta(minutes=10)
    advance(world, clock, 9 * 60)
    assert scheduled(world, 2537) == []
    advance(world, clock, 60)
    assert scheduled(world, 2537) == [T0 + timedelta(minutes=10)]
    advance(world, clock, 25 * 60)  # a jump of the clock: each firing at its own time
    assert scheduled(world, 2537) == [T0 + timedelta(minutes=m) for m in (10, 20, 30)]
    assert schedule.nextRunTime == T0 + timedelta(minutes=40)
    assert all(r.status == 10 or r.status == 9 for r in world.runs(2537))  # took their fate


def test_a_schedule_that_does_not_fire_still_moves_on(world, clock) -> None:
    silent = world.add_schedule(2537, every=timedelta(minutes=5), fires=False)
    off = world.add_schedule(1596, every=timedelta(minutes=5), enabled=False)
    advance(world, clock, 16 * 60)
    assert world.runs(2537) == [] and world.runs(1596) == []
    assert silent.nextRunTime == off.nextRunTime == T0 + timedelta(minutes=20)
    off.isEnabled = True
    advance(world, clock, 4 * 60)
    assert scheduled(world, 1596) == [T0 + timedelta(minutes=20)]


def test_an_archived_agents_schedule_makes_skipped_runs(world, clock) -> None:
    world.agents[2537].archived = True
    world.add_schedule(2537, every=timedelta(hours=1))
    advance(world, clock, 3600)
    (run,) = world.runs(2537)
    assert run.status == SKIPPED and run.startTime is None and run.endTime == run.created


def test_cron_and_run_once_schedules(world, clock) -> None:
    world.add_schedule(2537, cron="*/20 * * * *", fate="failure")
    once = world.add_schedule(1596, start=T0 + timedelta(minutes=7), fate="success")
    advance(world, clock, 3600)
    assert scheduled(world, 2537) == [T0 + timedelta(minutes=m) for m in (0, 20, 40, 60)]
    assert scheduled(world, 1596) == [T0 + timedelta(minutes=7)]
    assert once.nextRunTime is None
    with pytest.raises(ValueError):
        world.add_schedule(1596)  # RunOnce without a start


# ------------------------------------------------------------------- endpoints


async def test_agent_schedules_endpoint(client, world, clock) -> None:
    world.add_schedule(2537, every=timedelta(hours=2), name="every two hours")
    world.add_schedule(2537, cron="30 6 * * 1-5", timezone="Europe/Berlin", enabled=False)
    body = await get_json(client, f"{API}/agent/2537/schedules")
    assert [list(s) for s in body] == [list(SCHEDULE_FIELDS)] * 2
    every, cron = body
    assert every["name"] == "every two hours" and every["configId"] == 2537
    assert (every["scheduleType"], every["runEveryCount"], every["runEveryPeriod"]) == (2, 2, 2)
    assert every["nextRunTime"] == "2026-11-23T14:00:00.000000Z" and every["isEnabled"]
    assert every["schedule"] is None and every["timezone"] == "UTC"
    assert (cron["scheduleType"], cron["schedule"], cron["timezone"]) == (
        3,
        "30 6 * * 1-5",
        "Europe/Berlin",
    )
    assert cron["nextRunTime"] == "2026-11-24T05:30:00.000000Z" and not cron["isEnabled"]
    assert await get_json(client, f"{API}/agent/1596/schedules") == []
    await get_json(client, f"{API}/agent/42/schedules", 404)
    world.status_as_string = True
    assert (await get_json(client, f"{API}/agent/2537/schedules"))[0]["scheduleType"] == "RunEvery"


async def test_upcoming_schedules_of_every_agent_in_one_request(client, world, clock) -> None:
    world.add_schedule(2537, every=timedelta(hours=3), name="steam")
    world.add_schedule(1596, every=timedelta(minutes=30), name="prices")
    world.add_schedule(1596, start=T0 + timedelta(days=3), name="once")
    rows = await get_json(client, f"{API}/analytics/schedules/upcoming")
    assert [r["scheduleName"] for r in rows] == ["prices", "steam", "once"]
    assert set(rows[0]) == {
        "scheduleId", "agentId", "agentName", "scheduleName", "nextRunTime", "timezone",
        "isEnabled",
    }  # fmt: skip
    assert rows[0]["agentName"] == "amazon-prices" and rows[0]["agentId"] == 1596
    window = "startDate=2026-11-23T13:00:00Z&endDate=2026-11-24"
    rows = await get_json(client, f"{API}/analytics/schedules/upcoming?{window}")
    assert [r["scheduleName"] for r in rows] == ["steam"]
    advance(world, clock, 3600)
    rows = await get_json(client, f"{API}/analytics/schedules/upcoming")
    assert rows[0]["nextRunTime"] == "2026-11-23T13:30:00.000000Z"
    await get_json(client, f"{API}/analytics/schedules/upcoming?startDate=soon", 400)
