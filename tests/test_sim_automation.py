"""The simulated automation-runs API: routes, shapes, auth and 422 bodies as in seed 003, its
world, and the three-platform demo."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from watcher.app import App
from watcher.config import Settings, WatcherSection
from watcher_sim import AutomationWorld, make_automation_app
from watcher_sim.automation_world import RUN_FIELDS, STEP_FIELDS
from watcher_sim.demo import start_platforms

from .conftest import FakeClock

KEY = "sim-automation-key"
HEADERS = {"X-API-Key": KEY}
API = "/api/v1/automation-runs"

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def auto(clock: FakeClock) -> AutomationWorld:
    world = AutomationWorld(now=clock)
    world.add_automation("sync", "Invoice sync")
    return world


@pytest.fixture
async def client(aiohttp_client: ClientFactory, auto: AutomationWorld) -> TestClient[Any, Any]:
    return await aiohttp_client(make_automation_app(auto))


async def call(
    client: TestClient[Any, Any], method: str, path: str, status: int = 200, **kw: Any
) -> Any:
    kw.setdefault("headers", HEADERS)
    resp = await client.request(method, path, **kw)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_auth_by_key_bearer_or_cookie(client, auto) -> None:
    assert await call(client, "GET", API, 401, headers={}) == {"detail": "Not authenticated"}
    wrong = await call(client, "GET", API, 401, headers={"X-API-Key": "nope"})
    assert wrong == {"detail": "Invalid authentication credentials"}
    bearer = {"Authorization": "Bearer sim-automation-token"}
    assert (await call(client, "GET", API, headers=bearer))["total"] == 0
    cookie = {"Cookie": "vai_token=sim-automation-token"}
    assert (await call(client, "GET", API, headers=cookie))["total"] == 0


async def test_listing_pages_newest_first(client, auto, clock) -> None:
    runs = [
        auto.add_run("sync", "succeeded", created=clock() + timedelta(minutes=i)) for i in range(7)
    ]
    page = await call(client, "GET", f"{API}?limit=3&offset=2")
    assert page["total"] == 7
    assert [r["id"] for r in page["items"]] == [r.id for r in runs[::-1][2:5]]
    assert list(page["items"][0]) == list(RUN_FIELDS)
    assert page["items"][0]["createdAt"].endswith("Z")
    assert len((await call(client, "GET", API))["items"]) == 7  # default limit 100
    failed = auto.add_run("sync", "failed")
    only = await call(client, "GET", f"{API}?status=failed")
    assert [r["id"] for r in only["items"]] == [failed.id] and only["total"] == 1


@pytest.mark.parametrize(
    ("query", "loc", "kind"),
    [
        ("limit=1001", ["query", "limit"], "less_than_equal"),
        ("limit=0", ["query", "limit"], "greater_than_equal"),
        ("offset=-1", ["query", "offset"], "greater_than_equal"),
        ("limit=ten", ["query", "limit"], "int_parsing"),
    ],
)
async def test_bad_parameters_are_422_with_fastapi_detail(client, query, loc, kind) -> None:
    body = await call(client, "GET", f"{API}?{query}", 422)
    (detail,) = body["detail"]
    assert (detail["loc"], detail["type"]) == (loc, kind) and detail["msg"].startswith("Input")


async def test_get_run_validates_the_uuid(client, auto) -> None:
    run = auto.add_run("sync", "running")
    assert (await call(client, "GET", f"{API}/{run.id}"))["status"] == "running"
    bad = await call(client, "GET", f"{API}/not-a-uuid", 422)
    assert bad["detail"][0]["loc"] == ["path", "run_id"]
    assert await call(client, "GET", f"{API}/{uuid.uuid4()}", 404) == {"detail": "Run not found"}


async def test_steps_of_a_failed_run(client, auto) -> None:
    run = auto.add_run("sync", "failed", failed_step="parse", error="Schema mismatch")
    body = await call(client, "GET", f"{API}/{run.id}/steps")
    assert (body["automationRunId"], body["completedCount"], body["failedCount"]) == (run.id, 1, 1)
    assert list(body["steps"][0]) == list(STEP_FIELDS)
    assert [(s["key"], s["status"]) for s in body["steps"]] == [
        ("fetch", "succeeded"),
        ("parse", "failed"),
        ("store", "skipped"),
    ]
    assert body["steps"][1]["error"] == {"message": "Schema mismatch"}
    assert body["steps"][1]["dependsOn"] == ["fetch"]
    run_body = await call(client, "GET", f"{API}/{run.id}")
    assert run_body["error"]["stepKey"] == "parse" and run_body["completedAt"]


async def test_cancel_and_retry(client, auto) -> None:
    run = auto.add_run("sync", "running")
    assert (await call(client, "POST", f"{API}/{run.id}/cancel"))["status"] == "cancelled"
    again = await call(client, "POST", f"{API}/{run.id}/cancel", 409)
    assert "only pending or running" in again["detail"]
    bad = await call(client, "POST", f"{API}/{run.id}/retry", 422, json={"mode": "sideways"})
    assert bad["detail"][0]["loc"] == ["body", "mode"]
    new = await call(client, "POST", f"{API}/{run.id}/retry", json={})
    assert (new["status"], new["triggerType"], new["triggerSourceId"]) == (
        "pending",
        "retry",
        run.id,
    )
    step = await call(client, "POST", f"{API}/{run.id}/retry", 409, json={"mode": "from_step"})
    assert "stepKey" in step["detail"]


def test_started_runs_move_through_their_steps(auto, clock) -> None:
    runs = {fate: auto.start_run("sync", fate) for fate in ("success", "failure", "cancelled")}
    clock.advance(auto.tick * 2.5)
    auto.step()
    assert runs["success"].status == "running"
    assert [s.status for s in runs["success"].steps][:2] == ["succeeded", "running"]
    clock.advance(auto.tick * 5)
    auto.step()
    assert {f: r.status for f, r in runs.items()} == {
        "success": "succeeded",
        "failure": "failed",
        "cancelled": "cancelled",
    }
    assert [s.status for s in runs["success"].steps] == ["succeeded"] * 3
    assert sum(s.status == "failed" for s in runs["failure"].steps) == 1


def test_an_unknown_status_is_served_as_given(auto) -> None:
    run = auto.add_run("sync", "running")
    assert auto.set_status(run.id, "Paused_For_Review").status == "Paused_For_Review"


async def test_faults_answer_in_the_fastapi_shape(client, auto) -> None:
    auto.inject(API, kind="http", status=503)
    body = await call(client, "GET", API, 503, headers={})
    assert body == {"detail": "The service is temporarily unavailable (injected fault)."}
    auto.inject(API, kind="html", status=502)
    resp = await client.get(API, headers=HEADERS)
    assert resp.status == 502 and "nginx" in await resp.text()


def test_demo_is_deterministic_and_finishes_every_way() -> None:
    def run(seed: int) -> list[tuple[str, str, str]]:
        clock = FakeClock()
        start = clock()
        world = AutomationWorld.demo(seed=seed, now=clock)
        for _ in range(20):  # 10 s at the default tick of 1.5 s
            clock.advance(0.5)
            world.step()
        return [
            (r.automationId, r.id, r.status) for r in world.listing()[::-1] if r.createdAt >= start
        ]

    first = run(5)
    assert first == run(5) and first != run(6)
    assert {"succeeded", "failed", "cancelled"} <= {status for _, _, status in first}


async def test_the_demo_shows_the_three_platforms(tmp_path: Path) -> None:
    """`watcher demo`'s platforms, at a fast tick: every source sees its runs finish."""
    platforms = await start_platforms(seed=7, tick=0.15)
    try:
        assert [s.name for s in platforms.sources] == ["cloud", "acc", "automation"]
        settings = Settings(
            watcher=WatcherSection(
                state_path=tmp_path / "state.db", events_path=None, log_format="json"
            ),
            sources=platforms.sources,
        )
        outcomes: dict[str, set[str]] = {"cloud": set(), "acc": set(), "automation": set()}
        async with App(settings) as app:
            for _ in range(40):
                for report in await app.once():
                    assert report.ok, report.error_line
                    for event in report.events:
                        if event.type == "run.finished" and event.outcome:
                            outcomes[event.source].add(str(event.outcome))
                if all({"success", "failure", "stopped"} <= o for o in outcomes.values()):
                    break
                await asyncio.sleep(0.1)
    finally:
        await platforms.close()
    assert all({"success", "failure", "stopped"} <= o for o in outcomes.values()), outcomes
