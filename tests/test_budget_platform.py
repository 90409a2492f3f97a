"""Hundreds of Sequentum Cloud agents against a simulated platform that allows 100 requests a
minute per key, on an injected clock, polled as the daemon would (a cycle every 15 s): no 429
is caused, every finish is alerted once and soon, a first start alerts long before it could
have listed every agent, and without hints the sweep still finds everything."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from watcher.app import App
from watcher.events import Event
from watcher.sources.http import HttpClient
from watcher_sim import World, make_cloud_app
from watcher_sim.model import FAILURE

from .conftest import API_KEY, FakeClock, make_settings, source_config

CYCLE = 15.0


def fleet(clock: FakeClock, agents: int, *, start_every: float | None, **world: object) -> World:
    """`agents` agents with some history, 5% of them running; with `start_every`, each starts
    a run that often (staggered), whose stages last 20 s."""
    w = World.bulk(agents, 3, 0.05, now=clock, tick=20, start_every=start_every, seed=5, **world)
    w.api_keys = {API_KEY}
    return w


async def watching(
    world: World, aiohttp_server, clock: FakeClock, http: HttpClient, tmp_path: Path
) -> App:
    """An App on `world` served on 127.0.0.1 (100 requests a minute per key), default config."""
    server = await aiohttp_server(make_cloud_app(world), host="127.0.0.1")
    url = str(server.make_url("")).rstrip("/")
    return App(make_settings(tmp_path, source_config(url, jitter=0)), clock=clock, http=http)


async def run_for(app: App, world: World, clock: FakeClock, minutes: float) -> None:
    """The daemon's beat: the platform moves on, one poll cycle, 15 s later the next."""
    (poller,) = app.pollers
    for _ in range(int(minutes * 60 / CYCLE)):
        world.step()
        await poller.poll()
        clock.advance(CYCLE)


def finished_runs(world: World, after: datetime, before: datetime) -> dict[str, datetime]:
    """Runs of the platform that finished in (after, before]: run id → end time."""
    out = {}
    for agent_id in world.agents:
        for run in world.runs(agent_id, include_unlisted=True):
            if run.endTime is not None and after < run.endTime <= before:
                out[str(run.id)] = run.endTime
    return out


def finishes(app: App) -> list[Event]:
    assert app.store is not None
    return app.store.events(type="run.finished")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


async def test_three_hundred_agents_within_the_limit(
    aiohttp_server, clock: FakeClock, http: HttpClient, tmp_path: Path
) -> None:
    world = fleet(clock, 300, start_every=2 * 3600)  # ~2.5 runs start a minute
    start = clock()
    async with await watching(world, aiohttp_server, clock, http, tmp_path) as app:
        await run_for(app, world, clock, minutes=20)
        events = finishes(app)
    end = clock()

    assert world.throttled == 0  # never a 429
    alerted = Counter((e.run_id, e.attempt) for e in events)
    assert [key for key, n in alerted.items() if n > 1] == []  # once each
    expected = finished_runs(world, start, end - timedelta(minutes=2))
    assert len(expected) > 30
    assert set(expected) <= {e.run_id for e in events}  # every finish alerted
    latency = [(e.ts - e.ended_at).total_seconds() for e in events if e.ended_at]
    assert p95(latency) < 60
    sent = sum(1 for c in world.calls if c.status != 429)
    assert sent / 20 <= 90  # what it sent: at most 90 a minute on average, 100 never


async def test_a_first_start_alerts_before_it_could_list_every_agent(
    aiohttp_server, clock: FakeClock, http: HttpClient, tmp_path: Path
) -> None:
    world = fleet(clock, 1000, start_every=None)
    async with await watching(world, aiohttp_server, clock, http, tmp_path) as app:
        await run_for(app, world, clock, minutes=0.5)  # the first start: two cycles
        idle = next(a for a in world.agents if world.last_run(a).status != 1)
        run = world.add_run(idle, status=1)
        clock.advance(5)
        world.set_status(idle, run.id, FAILURE)
        failed_at = clock()
        await run_for(app, world, clock, minutes=0.5)
        (alert,) = [e for e in finishes(app) if e.run_id == str(run.id)]
    before_alert = sum(1 for c in world.calls if c.status != 429)
    assert before_alert < 150  # not 1,000 run lists first
    assert (alert.ts - failed_at).total_seconds() <= 2 * CYCLE
    assert world.throttled == 0


async def test_without_hints_the_sweep_still_finds_every_finish(
    aiohttp_server, clock: FakeClock, http: HttpClient, tmp_path: Path
) -> None:
    world = fleet(clock, 300, start_every=2 * 3600, hints=False)
    start = clock()
    async with await watching(world, aiohttp_server, clock, http, tmp_path) as app:
        await run_for(app, world, clock, minutes=20)
        events = finishes(app)
        assert app.pollers[0].hinted is False
    end = clock()
    assert world.throttled == 0
    expected = finished_runs(world, start, end - timedelta(minutes=6))
    assert set(expected) <= {e.run_id for e in events}
    sweep_period = 300 / (90 - 5) * 60  # agents / run lists a minute, in seconds
    latency = [(e.ts - e.ended_at).total_seconds() for e in events if e.ended_at]
    assert max(latency) <= sweep_period + 2 * CYCLE
    assert Counter(e.run_id for e in events).most_common(1)[0][1] == 1


async def test_another_client_on_the_key_slows_watcher_down_without_an_outage(
    aiohttp_server, clock: FakeClock, http: HttpClient, tmp_path: Path
) -> None:
    world = fleet(clock, 300, start_every=2 * 3600)
    async with await watching(world, aiohttp_server, clock, http, tmp_path) as app:
        (poller,) = app.pollers
        for _ in range(int(15 * 60 / CYCLE)):  # a script spends 30 a minute on the same key
            for _ in range(8):
                world.admit(API_KEY)
            world.step()
            await poller.poll()
            clock.advance(CYCLE)
        assert app.store is not None
        failed = app.store.events(type="source.failed")
        budget = poller.source.budget
    assert failed == []  # a 429 is the platform's budget, not an outage
    assert 0 < budget.throttled < 20  # it met some, and backed off rather than storming
    assert budget.rate() < 90


async def test_watcher_once_right_after_another_does_not_sit_out_the_spent_window(
    aiohttp_server, clock: FakeClock, http: HttpClient, no_sleep, tmp_path: Path
) -> None:
    world = fleet(clock, 1000, start_every=None)
    server = await aiohttp_server(make_cloud_app(world), host="127.0.0.1")
    url = str(server.make_url("")).rstrip("/")

    def once_app() -> App:  # a fresh process each time: only the state file carries over
        return App(make_settings(tmp_path, source_config(url, jitter=0)), clock=clock, http=http)

    async with once_app() as app:
        (first,) = await app.once()
    clock.advance(1)
    async with once_app() as app:
        (second,) = await app.once()
    assert first.ok and second.ok
    assert second.deferred["budget"] > 0  # what it could not afford waits for the next run
    assert second.budget_wait is not None and second.budget_wait > 10
    assert max(no_sleep.delays, default=0) <= 10  # nothing like the window's 59 s
    assert world.throttled == 0

    idle = next(a for a in world.agents if world.last_run(a).status != 1)
    run = world.add_run(idle, status=1)
    clock.advance(5)
    world.set_status(idle, run.id, FAILURE)
    clock.advance(60)  # the cron's next minute: the window has slots again
    async with once_app() as app:
        (third,) = await app.once()
        (alert,) = [e for e in finishes(app) if e.run_id == str(run.id)]
    assert third.ok and alert.outcome == "failure"
    assert world.throttled == 0


async def test_hints_moving_faster_than_the_budget_lists_still_leave_the_sweep_its_turn(
    world: World, cloud_url: str, clock: FakeClock, http: HttpClient, tmp_path: Path
) -> None:
    busy = list(range(1, 7))
    for agent_id in busy:
        world.add_agent(id=agent_id, name=f"busy-{agent_id}")
        world.add_run(agent_id, status=10)
    world.add_agent(id=99, name="quiet")  # never ran: no hint ever moves for it
    # 12 requests a minute, a cycle every 15 s: 3 a cycle, the hints and two listings.
    config = source_config(cloud_url, jitter=0, requests_per_minute=12, sweep_interval=60)
    async with App(make_settings(tmp_path, config), clock=clock, http=http) as app:
        (poller,) = app.pollers
        await poller.poll()
        swept = []
        for _ in range(8):  # two minutes in which every busy agent moves every cycle
            clock.advance(CYCLE)
            for agent_id in busy:
                world.add_run(agent_id, status=10)
            await poller.poll()
            swept += [c for c in world.calls if c.path == "/api/v1/agent/99/runs"]
            world.calls.clear()
    assert len(swept) >= 2  # within every sweep_interval, however much the hints move
