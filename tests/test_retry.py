"""Automatic retries against the simulated platforms, the platforms' own schedules, and the
heartbeat: the right endpoint with the right body, at most `max`, never for a stopped run,
never twice for one attempt — also when the answer to a retry was lost."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web

from watcher.app import App
from watcher.config import RuleConfig, WatcherSection
from watcher_sim import AccWorld, AutomationWorld, World, make_acc_app, make_automation_app
from watcher_sim.acc_model import FAILED as ACC_FAILED

from .conftest import FakeClock, make_settings, of, source_config, tick
from .test_acc import GUID, PATH, TOKEN, acc_config
from .test_automation_runs import API, KEY, auto_config

AGENT = 2537
RETRY = RuleConfig(name="again", retry={"max": 2, "after": "5m"})


def posts(world: World | AccWorld | AutomationWorld) -> list[tuple[str, str, object]]:
    return [(c.path, c.query, c.body) for c in world.calls if c.method == "POST"]


@pytest.fixture
def cloud(world: World, tmp_path: Path, cloud_url: str, clock: FakeClock, http):
    world.add_agent(id=AGENT, name="steam", inputParameters={"country": "dk"})
    world.add_run(AGENT, status=9, run_id=1)

    def build(*rules: RuleConfig, **source: object) -> App:
        settings = make_settings(tmp_path, source_config(cloud_url, agents=[AGENT], **source))
        settings.rules = list(rules)
        return App(settings, clock=clock, http=http)

    return build


async def test_a_cloud_failure_is_retried_with_the_agents_input_up_to_max(
    world: World, cloud, clock: FakeClock
) -> None:
    async with cloud(RETRY) as app:
        await app.once()
        world.add_run(AGENT, status=6, run_id=2)
        await tick(app, clock)
        (first,) = [e for e in of(app, "run.finished") if e.run_id == "2"]
        assert first.get("retry") == {"try": 1, "of": 2, "at": "2026-11-23T12:05:15Z"}
        assert posts(world) == []  # not before `after`
        await tick(app, clock, 300)
        (start,) = posts(world)
        assert start == (
            f"/api/v1/agent/{AGENT}/start",
            {},
            {"inputParameters": json.dumps({"country": "dk"})},
        )
        (requested,) = of(app, "run.retry_requested")
        assert (requested.run_id, requested.get("try")) == ("2", 1)
        for _ in range(2):  # the new run fails too, and so does the second retry's
            newest = max(r.id for r in world.runs(AGENT))
            world.set_status(AGENT, newest, 6)
            await tick(app, clock)
            await tick(app, clock, 300)
        assert len(posts(world)) == 2  # max = 2: no third
        last = [e for e in of(app, "run.finished") if e.outcome.value == "failure"][-1]
    assert last.get("retries_tried") == 2 and last.get("retry") is None


async def test_a_stopped_run_is_never_retried(world: World, cloud, clock: FakeClock) -> None:
    async with cloud(RETRY) as app:
        await app.once()
        world.add_run(AGENT, status=8, run_id=2)
        await tick(app, clock)
        await tick(app, clock, 600)
        assert posts(world) == [] and of(app, "run.retry_requested") == []


async def test_a_retry_whose_answer_is_lost_is_never_sent_again(
    world: World, cloud, clock: FakeClock
) -> None:
    world.inject(f"/api/v1/agent/{AGENT}/start", kind="stall", delay=5, times=-1)
    async with cloud(RETRY, timeout=0.2) as app:
        await app.once()
        world.add_run(AGENT, status=6, run_id=2)
        await tick(app, clock)
        await tick(app, clock, 300)  # the start request times out: done or not, nobody knows
        assert len(posts(world)) == 1
        await tick(app, clock, 600)
    async with cloud(RETRY, timeout=0.2) as app:  # a restart changes nothing
        await tick(app, clock, 600)
        assert app.store is not None
        (row,) = app.store.retries("cloud")
    assert len(posts(world)) == 1 and row.state == "unknown"


async def test_a_retry_interrupted_before_its_answer_is_unknown_after_a_restart(
    world: World, cloud, clock: FakeClock
) -> None:
    """A crash while the request is out: the row says `sending`; the next start marks it
    unknown and never asks again."""
    async with cloud(RETRY) as app:
        await app.once()
        world.add_run(AGENT, status=6, run_id=2)
        await tick(app, clock)
        assert app.store is not None
        (row,) = app.store.retries("cloud")
        now = clock()
        sending = replace(row, state="sending")
        app.store.commit(source="cloud", retries=[sending], now=now, now_ts=now.timestamp())
    async with cloud(RETRY) as app:
        await tick(app, clock, 600)
        assert app.store is not None
        (row,) = app.store.retries("cloud")
    assert row.state == "unknown" and posts(world) == []


@pytest.fixture
async def acc(aiohttp_server, clock: FakeClock) -> AsyncIterator[tuple[AccWorld, str]]:
    world = AccWorld(now=clock, tokens={TOKEN})
    world.add_agent(PATH, agent_id=GUID)
    server = await aiohttp_server(make_acc_app(world), host="127.0.0.1")
    yield world, str(server.make_url("")).rstrip("/")


async def test_an_acc_failure_is_retried_in_place_continuing_its_errors(
    acc, tmp_path: Path, clock: FakeClock, http
) -> None:
    world, url = acc
    settings = make_settings(tmp_path, acc_config(url))
    settings.rules = [RETRY]
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        run = world.add_run(GUID, ACC_FAILED)
        await tick(app, clock)
        await tick(app, clock, 300)
    retry = (f"/api/run/{run.agentRunHistoryId}/retry", {"RunMethod": "ContinueAndRetryErrors"}, {})
    assert posts(world) == [retry]


async def test_an_automation_failure_is_retried(aiohttp_server, tmp_path, clock, http) -> None:
    world = AutomationWorld(now=clock, api_keys={KEY})
    world.add_automation("sync")
    server = await aiohttp_server(make_automation_app(world), host="127.0.0.1")
    settings = make_settings(tmp_path, auto_config(str(server.make_url("")).rstrip("/")))
    settings.rules = [RETRY]
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        clock.advance(5)  # a run that fails after the first poll: news, not history
        run = world.add_run("sync", "failed")
        await tick(app, clock)
        await tick(app, clock, 300)
        await tick(app, clock)  # the new run the retry started is watched like any other
    assert posts(world) == [(f"{API}/{run.id}/retry", {}, {})]


async def test_a_platform_schedule_that_does_not_fire_is_missed(
    world: World, cloud, clock: FakeClock
) -> None:
    start = clock() + timedelta(minutes=30)
    world.add_schedule(AGENT, every=timedelta(hours=1), start=start, fires=False, name="hourly")
    rule = RuleConfig(name="platform", platform_schedules=True, grace="10m")
    async with cloud(rule) as app:
        await app.once()
        for _ in range(9):  # 12:00 → 12:45: the 12:30 start passes its grace, no run
            world.step()
            await tick(app, clock, 300)
        (missed,) = of(app, "agent.missed_schedule")
    assert missed.get("expected_at") == "2026-11-23T12:30:00Z"
    assert "platform schedule hourly" in (missed.message or "")


async def test_a_platform_schedule_that_fires_is_not_missed(
    world: World, cloud, clock: FakeClock
) -> None:
    start = clock() + timedelta(minutes=30)
    world.add_schedule(AGENT, every=timedelta(hours=1), start=start, name="hourly")
    rule = RuleConfig(name="platform", platform_schedules=True, grace="10m")
    async with cloud(rule) as app:
        await app.once()
        for _ in range(9):
            world.step()
            await tick(app, clock, 300)
        assert of(app, "agent.missed_schedule") == []


@pytest.fixture
async def pings(aiohttp_server) -> AsyncIterator[tuple[list[str], str]]:
    got: list[str] = []

    async def ping(request: web.Request) -> web.Response:
        got.append(request.path_qs)
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/{tail:.*}", ping)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield got, str(server.make_url("/ping/uuid-1234-secret"))


async def test_the_heartbeat_pings_while_healthy_and_fails_with_a_source(
    world: World, tmp_path: Path, cloud_url: str, clock: FakeClock, http, pings
) -> None:
    got, url = pings
    world.add_agent(id=AGENT, name="steam")
    settings = make_settings(tmp_path, source_config(cloud_url, agents=[AGENT]))
    settings.watcher = WatcherSection(**{**settings.watcher.model_dump(), "heartbeat_url": url})
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        await tick(app, clock, 15)  # within the minute: no second ping
        await tick(app, clock, 60)
        assert got == ["/ping/uuid-1234-secret"] * 2
        world.api_keys = set()  # the source fails
        clock.advance(60)
        await app.once()
    assert got[-1] == "/ping/uuid-1234-secret/fail"


async def test_heartbeat_fail_url_is_what_a_source_failed_pings(
    world: World, tmp_path: Path, cloud_url: str, clock: FakeClock, http, pings
) -> None:
    got, url = pings
    alarm = url.replace("/ping/", "/alarm/")
    world.add_agent(id=AGENT, name="steam")
    settings = make_settings(tmp_path, source_config(cloud_url, agents=[AGENT]))
    fields = {"heartbeat_url": url, "heartbeat_fail_url": alarm}
    settings.watcher = WatcherSection(**{**settings.watcher.model_dump(), **fields})
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        assert got == ["/ping/uuid-1234-secret"]
        world.inject("*", status=503, times=-1)  # the platform is down …
        clock.advance(60)
        await app.once()
        assert got == ["/ping/uuid-1234-secret"]  # … a blip so far: no ping, and no alarm
        for _ in range(4):  # … until it has failed source_failed_after (3 minutes)
            clock.advance(60)
            await app.once()
            if of(app, "source.failed"):
                break
        assert len(of(app, "source.failed")) == 1
        assert got == ["/ping/uuid-1234-secret", "/alarm/uuid-1234-secret"]
        clock.advance(60)
        await app.once()  # still down: said once
        world.faults.clear()
        clock.advance(60)
        await app.once()
    assert got == ["/ping/uuid-1234-secret", "/alarm/uuid-1234-secret", "/ping/uuid-1234-secret"]


async def test_the_default_fail_url_keeps_the_ping_urls_query(
    world: World, tmp_path: Path, cloud_url: str, clock: FakeClock, http, pings
) -> None:
    """healthchecks.io's `?create=1` (make the check on the first ping): "/fail" goes on the
    path, or the failure would arrive as a success ping with create=1/fail."""
    got, url = pings
    world.add_agent(id=AGENT, name="steam")
    settings = make_settings(tmp_path, source_config(cloud_url, agents=[AGENT]))
    fields = {"heartbeat_url": url + "/?create=1"}
    settings.watcher = WatcherSection(**{**settings.watcher.model_dump(), **fields})
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        world.api_keys = set()  # a refused key: source.failed at once
        clock.advance(60)
        await app.once()
    assert got == ["/ping/uuid-1234-secret/?create=1", "/ping/uuid-1234-secret/fail?create=1"]
