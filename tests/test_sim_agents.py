"""The simulated Cloud's agent listing: the change hints (`status`, `lastActivity`) worked out
from the runs, filters, sort orders and pages of `GET /api/v1/agent/all`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from watcher_sim import World, make_cloud_app
from watcher_sim.model import COMPLETED, FAILURE, QUEUING, RUNNING, STOPPING, SUCCESS

from .conftest import FakeClock
from .simcloud import API, ClientFactory, get_json, two_agents


@pytest.fixture
def world(clock: FakeClock) -> World:
    return two_agents(clock, spaceId=4)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, world: World) -> TestClient[Any, Any]:
    return await aiohttp_client(make_cloud_app(world))


async def hint(client: TestClient[Any, Any], agent_id: int) -> tuple[Any, Any]:
    agents = await get_json(client, f"{API}/agent/all")
    (agent,) = [a for a in agents if a["id"] == agent_id]
    single = await get_json(client, f"{API}/agent/{agent_id}")
    assert (single["status"], single["lastActivity"]) == (agent["status"], agent["lastActivity"])
    return agent["status"], agent["lastActivity"]


def stamp(clock: FakeClock) -> str:
    return clock.t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------------ hints


async def test_an_agent_that_never_ran_has_no_hints(client) -> None:
    assert await hint(client, 2537) == (None, None)


async def test_hints_follow_every_change_of_any_run(client, world, clock) -> None:
    run = world.add_run(2537, RUNNING)
    assert await hint(client, 2537) == (RUNNING, stamp(clock))
    clock.advance(30)
    world.set_status(2537, run.id, FAILURE)
    assert await hint(client, 2537) == (FAILURE, stamp(clock))
    clock.advance(30)
    world.restart_run(2537, run.id)
    assert await hint(client, 2537) == (3, stamp(clock))  # Starting again
    clock.advance(30)
    world.stop_run(2537, run.id)
    assert await hint(client, 2537) == (STOPPING, stamp(clock))
    stopping = stamp(clock)
    clock.advance(world.tick)
    world.step()  # Stopping → Stopped, by the autopilot, due at once
    assert await hint(client, 2537) == (8, stopping)


async def test_archiving_a_failure_is_activity(client, world, clock) -> None:
    run = world.add_run(2537, FAILURE)
    clock.advance(60)
    world.archive(2537, run.id)
    assert await hint(client, 2537) == (7, stamp(clock))


async def test_status_is_the_newest_runs_while_activity_is_any_runs(client, world, clock) -> None:
    old = world.add_run(2537, RUNNING)
    clock.advance(10)
    world.add_run(2537, QUEUING)
    clock.advance(10)
    world.set_status(2537, old.id, COMPLETED)  # the older run changes last
    assert await hint(client, 2537) == (QUEUING, stamp(clock))


async def test_hints_use_status_names_when_the_world_sends_names(client, world) -> None:
    world.add_run(2537, SUCCESS)
    world.add_run(1596, COMPLETED, status_text="CompletedWithErrors")
    world.status_as_string = True
    assert (await hint(client, 2537))[0] == "Success"
    assert (await hint(client, 1596))[0] == "CompletedWithErrors"


async def test_a_world_without_hints_sends_nulls(aiohttp_client, clock) -> None:
    world = World(now=clock, hints=False)
    world.add_agent(1, "one")
    world.add_run(1, RUNNING)
    client = await aiohttp_client(make_cloud_app(world))
    assert await hint(client, 1) == (None, None)
    query = "sortColumn=lastActivity&sortOrder=1&status=1"
    assert await get_json(client, f"{API}/agent/all?{query}") == []


# ----------------------------------------------------------------- sort and filter


async def test_sort_by_last_activity_puts_agents_that_never_ran_last(client, world, clock) -> None:
    world.add_agent(7, "never-ran")
    clock.advance(10)
    world.add_run(1596, COMPLETED)
    clock.advance(10)
    world.add_run(2537, RUNNING)
    desc = await get_json(client, f"{API}/agent/all?sortColumn=lastActivity&sortOrder=1")
    assert [a["id"] for a in desc] == [2537, 1596, 7]
    asc = await get_json(client, f"{API}/agent/all?sortColumn=lastActivity&sortOrder=0")
    assert [a["id"] for a in asc] == [1596, 2537, 7]


async def test_sort_by_name_created_updated(client, world, clock) -> None:
    clock.advance(5)
    world.add_agent(9, "Zebra")
    world.add_agent(8, "alpha")
    by_name = await get_json(client, f"{API}/agent/all?sortColumn=name")
    assert [a["name"] for a in by_name] == ["alpha", "amazon-prices", "steam", "Zebra"]
    newest = await get_json(client, f"{API}/agent/all?sortColumn=created&sortOrder=1")
    assert [a["id"] for a in newest] == [9, 8, 2537, 1596]  # ties keep their order
    clock.advance(5)
    world.restore_version(1596, 1)
    updated = await get_json(client, f"{API}/agent/all?sortColumn=updated&sortOrder=1")
    assert updated[0]["id"] == 1596


async def test_filters(client, world) -> None:
    world.add_run(2537, FAILURE)
    world.add_run(1596, SUCCESS)
    world.add_agent(3, "steam-deals", configType=2)

    async def ids(query: str) -> list[int]:
        return [a["id"] for a in await get_json(client, f"{API}/agent/all?{query}")]

    assert await ids("status=6") == [2537]
    assert await ids("spaceId=4") == [1596]
    assert await ids("name=STEAM") == [2537, 3]
    assert await ids("configType=2") == [3]
    assert await ids("name=steam&status=6") == [2537]
    world.status_as_string = True
    assert await ids("status=failure") == [2537]
    await get_json(client, f"{API}/agent/all?spaceId=x", 400)


# ------------------------------------------------------------------------ pages


async def test_pages_hold_at_most_100_agents(client, world) -> None:
    for i in range(148):
        world.add_agent(10_000 + i)
    page = await get_json(client, f"{API}/agent/all?pageIndex=1&recordsPerPage=500")
    assert len(page["agents"]) == 100 and page["totalRecordCount"] == 150
    second = await get_json(client, f"{API}/agent/all?pageIndex=2&recordsPerPage=500")
    assert len(second["agents"]) == 50
    default = await get_json(client, f"{API}/agent/all?pageIndex=1")
    assert len(default["agents"]) == 50
    world.max_page_size = None
    whole = await get_json(client, f"{API}/agent/all?pageIndex=1&recordsPerPage=500")
    assert len(whole["agents"]) == 150


async def test_a_page_can_be_named_items(client, world) -> None:
    world.page_key = "items"
    page = await get_json(client, f"{API}/agent/all?pageIndex=1&recordsPerPage=1")
    assert set(page) == {"items", "totalRecordCount"} and page["totalRecordCount"] == 2


async def test_paging_through_a_sorted_filtered_listing(client, world, clock) -> None:
    for i in range(5):
        clock.advance(timedelta(minutes=1).total_seconds())
        world.add_agent(100 + i, f"shop-{i}")
        world.add_run(100 + i, SUCCESS)
    query = "name=shop&sortColumn=lastActivity&sortOrder=1&recordsPerPage=2"
    seen = []
    for index in (1, 2, 3):
        page = await get_json(client, f"{API}/agent/all?{query}&pageIndex={index}")
        assert page["totalRecordCount"] == 5
        seen += [a["id"] for a in page["agents"]]
    assert seen == [104, 103, 102, 101, 100]
