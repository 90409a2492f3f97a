"""The platforms' own schedules as the rules read them, against the simulators on an injected
clock: the ACC's job schedules, a disabled Cloud schedule, an archived agent's Skipped run, and
how often the upcoming schedules are read (`[watcher] schedule_refresh`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from watcher.app import App
from watcher.config import RuleConfig, WatcherSection
from watcher.events import Event
from watcher_sim import AccWorld, World, make_acc_app

from .conftest import FakeClock, make_settings, of, source_config, tick
from .test_acc import GUID, PATH, TOKEN, acc_config

AGENT = 2537
PLATFORM = RuleConfig(name="platform", platform_schedules=True, grace="10m")
UPCOMING = "/api/v1/analytics/schedules/upcoming"


# --- the ACC's job schedules -----------------------------------------------------------------


@pytest.fixture
async def acc(aiohttp_server, clock: FakeClock) -> AsyncIterator[tuple[AccWorld, str]]:
    world = AccWorld(now=clock, tokens={TOKEN})
    world.add_agent(PATH, agent_id=GUID)
    server = await aiohttp_server(make_acc_app(world), host="127.0.0.1")
    yield world, str(server.make_url("")).rstrip("/")


async def watch_acc(
    world: AccWorld, url: str, tmp_path: Path, clock: FakeClock, http, minutes: int
) -> list[Event]:
    """Poll the ACC every 5 minutes for `minutes`, the simulated ACC keeping time; the
    missed schedules found."""
    settings = make_settings(tmp_path, acc_config(url))
    settings.rules = [PLATFORM]
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        for _ in range(minutes // 5):
            clock.advance(300)
            world.step()
            await tick(app, clock, 0)
        return of(app, "agent.missed_schedule")


async def test_an_acc_job_schedule_that_does_not_fire_is_missed_once(
    acc, tmp_path: Path, clock: FakeClock, http
) -> None:
    world, url = acc
    world.add_schedule(GUID, "30 * * * *", fires=False)  # 12:30, 13:30 …
    (missed,) = await watch_acc(world, url, tmp_path, clock, http, 45)  # 12:00 → 12:45
    assert missed.agent_id == PATH and missed.get("expected_at") == "2026-11-23T12:30:00Z"
    assert missed.get("schedule") == "platform schedule Runs at '30 * * * *' (UTC)."
    reads = [c.path for c in world.calls if c.path.endswith("/schedules")]
    assert reads == [f"/api/job/{GUID}/schedules"] * 5  # every 10 minutes: 12:00 … 12:40


async def test_an_acc_job_schedule_that_starts_its_job_in_time_is_not_missed(
    acc, tmp_path: Path, clock: FakeClock, http
) -> None:
    world, url = acc
    world.add_schedule(GUID, "30 * * * *")
    assert await watch_acc(world, url, tmp_path, clock, http, 50) == []
    assert len(world.job_history(GUID)) == 1  # the 12:30 job ran, and watcher saw it start


# --- Sequentum Cloud -------------------------------------------------------------------------


@pytest.fixture
def cloud(world: World, tmp_path: Path, cloud_url: str, clock: FakeClock, http):
    world.add_agent(id=AGENT, name="steam")
    world.add_run(AGENT, status=9, run_id=1)

    def build(*rules: RuleConfig, refresh: float | None = None) -> App:
        settings = make_settings(tmp_path, source_config(cloud_url, agents=[AGENT]))
        settings.rules = list(rules)
        if refresh is not None:
            fields = settings.watcher.model_dump()
            settings.watcher = WatcherSection(**{**fields, "schedule_refresh": refresh})
        return App(settings, clock=clock, http=http)

    return build


async def run_for(app: App, world: World, clock: FakeClock, minutes: int, every: float) -> None:
    await app.once()
    for _ in range(int(minutes * 60 // every)):
        world.step()
        await tick(app, clock, every)


async def test_a_disabled_schedule_expects_nothing(world: World, cloud, clock) -> None:
    start = clock() + timedelta(minutes=30)
    world.add_schedule(AGENT, every=timedelta(hours=1), start=start, enabled=False)
    async with cloud(PLATFORM) as app:
        await run_for(app, world, clock, 50, 300)  # 12:00 → 12:50: past 12:30 and its grace
        assert of(app, "agent.missed_schedule") == []
        assert app.store is not None and app.store.expected("cloud", clock() + timedelta(1)) == []
    assert world.runs(AGENT)[0].id == 1  # nothing ran, and nothing was expected to
    assert any(c.path == UPCOMING for c in world.calls)  # it was read, and said "disabled"


async def test_the_skipped_run_of_an_archived_agent_counts_as_a_start(
    world: World, cloud, clock
) -> None:
    world.agent(AGENT).archived = True
    start = clock() + timedelta(minutes=30)
    world.add_schedule(AGENT, every=timedelta(hours=1), start=start, name="hourly")
    async with cloud(PLATFORM) as app:
        await run_for(app, world, clock, 50, 300)
        skipped = [e for e in of(app, "run.finished") if e.status == "Skipped"]
        assert of(app, "agent.missed_schedule") == []
    (run,) = skipped  # the platform recorded the slot as Skipped, and watcher saw it
    assert run.outcome is not None and run.outcome.value == "skipped"


async def test_a_start_while_watcher_was_down_is_no_miss(world: World, cloud, clock) -> None:
    """Back after the slot's grace, watcher lists the run the schedule started meanwhile and
    judges the slot in the same poll: the run it has just seen counts."""
    start = clock() + timedelta(minutes=30)
    world.add_schedule(AGENT, every=timedelta(hours=1), start=start, fate="success")
    async with cloud(PLATFORM) as app:
        await run_for(app, world, clock, 20, 300)  # 12:20: the 12:30 start is expected
    clock.advance(40 * 60)  # down until 13:00; the 12:30 run starts and succeeds meanwhile
    world.step()
    async with cloud(PLATFORM) as app:
        await run_for(app, world, clock, 10, 300)
        (finished,) = [e for e in of(app, "run.finished") if e.run_id != "1"]
        assert of(app, "agent.missed_schedule") == []
    assert finished.started_at is not None and finished.started_at.minute == 30


async def test_a_skipped_slot_while_watcher_was_down_is_no_miss(world: World, cloud, clock) -> None:
    """The Skipped run never started, so the platform gives it no start time; watcher first
    sees it after the slot's grace, back from a restart — the platform's record of it still
    says the schedule fired."""
    world.agent(AGENT).archived = True
    start = clock() + timedelta(minutes=30)
    world.add_schedule(AGENT, every=timedelta(hours=1), start=start, name="hourly")
    async with cloud(PLATFORM) as app:
        await run_for(app, world, clock, 20, 300)  # 12:20: the 12:30 start is expected
    clock.advance(40 * 60)  # down until 13:00; the platform skips the 12:30 start meanwhile
    world.step()
    async with cloud(PLATFORM) as app:
        await run_for(app, world, clock, 10, 300)
        (skipped,) = [e for e in of(app, "run.finished") if e.status == "Skipped"]
        assert of(app, "agent.missed_schedule") == []
        assert app.store is not None  # and as written, its start is its end, not 13:00
        assert app.store.starts("cloud", str(AGENT))[skipped.run_id or ""] == start
    assert skipped.started_at is None and skipped.ended_at == start


@pytest.mark.parametrize(("refresh", "reads"), [(None, 3), (300, 6), (3600, 1)])
async def test_the_upcoming_schedules_are_read_every_schedule_refresh(
    world: World, cloud, clock, refresh: float | None, reads: int
) -> None:
    world.add_schedule(AGENT, every=timedelta(hours=1), start=clock() + timedelta(hours=2))
    async with cloud(PLATFORM, refresh=refresh) as app:
        await run_for(app, world, clock, 25, 15)  # 25 minutes of 15-s polls: 101 cycles
    # 600 s (the default): at 0, 10 and 20 minutes; 300 s: at 0, 5, 10, 15, 20 and 25
    assert sum(1 for c in world.calls if c.path == UPCOMING) == reads


async def test_without_platform_schedules_they_are_never_read(world: World, cloud, clock) -> None:
    world.add_schedule(AGENT, every=timedelta(hours=1), start=clock() + timedelta(minutes=5))
    async with cloud(RuleConfig(name="stuck", max_duration="2h")) as app:
        await run_for(app, world, clock, 20, 60)
    assert not any(c.path == UPCOMING for c in world.calls)
