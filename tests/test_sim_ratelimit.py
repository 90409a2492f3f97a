"""The simulated platforms' rate limit and request log: 100 requests a minute per Cloud key (a
sliding window on the world's clock), 429 with Retry-After and the platform's error body, and
every request recorded with its query and body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from watcher_sim import AccWorld, AutomationWorld, World, make_acc_app, make_automation_app
from watcher_sim.cloud import make_cloud_app
from watcher_sim.ratelimit import SlidingWindow

from .conftest import FakeClock

API = "/api/v1"
KEY = {"Authorization": "ApiKey sim-key"}
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def cloud(clock: FakeClock) -> World:
    world = World(now=clock, api_keys=("sim-key", "other-key"))
    world.add_agent(2537, "steam")
    return world


@pytest.fixture
async def client(aiohttp_client: ClientFactory, cloud: World) -> TestClient[Any, Any]:
    return await aiohttp_client(make_cloud_app(cloud))


async def statuses(client: TestClient[Any, Any], n: int, headers: dict[str, str]) -> list[int]:
    out = []
    for _ in range(n):
        resp = await client.get(f"{API}/agent/all", headers=headers)
        await resp.read()
        out.append(resp.status)
    return out


def test_the_cloud_limit_is_100_a_minute_by_default(clock: FakeClock) -> None:
    world = World(now=clock)
    assert world.limiter is not None
    assert (world.limiter.limit, world.limiter.window) == (100, timedelta(seconds=60))
    assert World(now=clock, rate_limit=None).limiter is None
    assert AccWorld(now=clock).limiter is None and AutomationWorld(now=clock).limiter is None


async def test_the_101st_request_in_a_minute_is_refused(client, cloud, clock) -> None:
    assert await statuses(client, 100, KEY) == [200] * 100
    clock.advance(20)
    resp = await client.get(f"{API}/agent/2537", headers=KEY)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "40"
    body = await resp.json()
    assert set(body) == {"statusCode", "statusDescription", "message"}
    assert body["statusCode"] == 429 and body["statusDescription"] == "Too Many Requests"
    assert cloud.throttled == 1 and cloud.throttled_by_key == {"sim-key": 1}
    assert cloud.calls[-1].status == 429


async def test_refused_requests_take_no_slot(client, cloud, clock) -> None:
    await statuses(client, 100, KEY)
    clock.advance(59)
    assert await statuses(client, 5, KEY) == [429] * 5
    clock.advance(0.5)
    resp = await client.get(f"{API}/agent/all", headers=KEY)
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"  # never 0
    clock.advance(0.5)  # the first 100 were all at t=0: a minute later every slot is free
    assert await statuses(client, 100, KEY) == [200] * 100
    assert cloud.throttled == 6


async def test_the_window_slides(aiohttp_client, clock) -> None:
    world = World(now=clock, rate_limit=3, rate_window=60)
    client = await aiohttp_client(make_cloud_app(world))
    for wait in (0, 30, 29):  # requests at t = 0, 30 and 59
        clock.advance(wait)
        assert await statuses(client, 1, KEY) == [200]
    clock.advance(0.5)
    resp = await client.get(f"{API}/agent/all", headers=KEY)
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    clock.advance(0.5)  # t = 60: the request of t = 0 is out of the window, that of 30 is not
    assert await statuses(client, 2, KEY) == [200, 429]
    clock.advance(30)  # t = 90
    assert await statuses(client, 2, KEY) == [200, 429]


async def test_each_key_has_its_own_budget(aiohttp_client, clock) -> None:
    world = World(now=clock, rate_limit=2, api_keys=("a", "b"), bearer_tokens=("t",))
    client = await aiohttp_client(make_cloud_app(world))
    for header in ("ApiKey a", "ApiKey b", "Bearer t"):
        assert await statuses(client, 3, {"Authorization": header}) == [200, 200, 429]
    assert world.throttled == 3 and world.throttled_by_key == {"a": 1, "b": 1, "t": 1}


async def test_unauthenticated_requests_are_answered_401_and_not_counted(client, cloud) -> None:
    assert await statuses(client, 120, {"Authorization": "ApiKey wrong"}) == [401] * 120
    assert await statuses(client, 3, {}) == [401] * 3
    assert await statuses(client, 100, KEY) == [200] * 100
    assert cloud.throttled == 0


async def test_no_limit(aiohttp_client, clock) -> None:
    world = World(now=clock, rate_limit=None)
    client = await aiohttp_client(make_cloud_app(world))
    assert set(await statuses(client, 150, KEY)) == {200}


def test_a_limit_admits_at_least_one_request() -> None:
    with pytest.raises(ValueError):
        SlidingWindow(0)
    with pytest.raises(ValueError):
        SlidingWindow(5, window=0)
    window = SlidingWindow(1, window=10)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert window.admit("k", t0) is None
    assert window.admit("k", t0 + timedelta(seconds=0.1)) == 10
    assert window.admit("k", t0 + timedelta(seconds=10)) is None


async def test_acc_and_automation_can_be_limited_too(aiohttp_client, clock) -> None:
    acc = AccWorld(now=clock, rate_limit=2)
    agent = acc.add_agent("sequentum/Test/quick")
    client = await aiohttp_client(make_acc_app(acc))
    path = f"/api/agent/{agent.agentId}/history"
    codes = []
    for _ in range(3):
        resp = await client.get(path, headers={"Authorization": "Bearer sim-acc-token"})
        codes.append(resp.status)
    assert codes == [200, 200, 429]
    assert set(await resp.json()) == {"message"} and resp.headers["Retry-After"] == "60"

    auto = AutomationWorld(now=clock, rate_limit=1)
    client = await aiohttp_client(make_automation_app(auto))
    headers = {"X-API-Key": "sim-automation-key"}
    assert (await client.get(f"{API}/automation-runs", headers=headers)).status == 200
    refused = await client.get(f"{API}/automation-runs", headers=headers)
    assert refused.status == 429 and set(await refused.json()) == {"detail"}
    assert auto.throttled_by_key == {"sim-automation-key": 1}


# ------------------------------------------------------------------ the request log


async def test_every_request_is_recorded_with_its_query_and_body(client, cloud) -> None:
    await client.get(f"{API}/agent/all?pageIndex=1&recordsPerPage=5", headers=KEY)
    body = {"inputParameters": {"q": "shoes"}, "parallelism": 2}
    await client.post(f"{API}/agent/2537/start", headers=KEY, json=body)
    await client.post(f"{API}/agent/2537/start", headers=KEY, data=b"not json")
    await client.get(f"{API}/agent/2537")
    first, start, bad, unauthenticated = cloud.calls
    assert (first.method, first.path, first.status) == ("GET", f"{API}/agent/all", 200)
    assert first.query == {"pageIndex": "1", "recordsPerPage": "5"} and first.body is None
    assert (start.method, start.body, start.status) == ("POST", body, 200)
    assert (bad.body, bad.status) == ("not json", 400)
    assert unauthenticated.status == 401
    assert cloud.requests == [
        ("GET", f"{API}/agent/all?pageIndex=1&recordsPerPage=5"),
        ("POST", f"{API}/agent/2537/start"),
        ("POST", f"{API}/agent/2537/start"),
        ("GET", f"{API}/agent/2537"),
    ]
    cloud.reset_counters()
    assert cloud.calls == [] and cloud.requests == [] and cloud.throttled == 0
