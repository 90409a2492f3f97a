"""Rules against the simulator, on an injected clock: a stuck run, a missed cron slot, a
"success" with no records — each reported once, and never again after a restart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from watcher.app import App
from watcher.config import RuleConfig
from watcher_sim import World

from .conftest import FakeClock, make_settings, of, source_config, tick

AGENT = 2537


@pytest.fixture
def watch(tmp_path: Path, cloud_url: str, clock: FakeClock, http) -> Callable[..., App]:
    """An App on the simulator with the given rules; call again for a restart."""

    def build(*rules: RuleConfig) -> App:
        settings = make_settings(tmp_path, source_config(cloud_url, agents=[AGENT]))
        settings.rules = list(rules)
        return App(settings, clock=clock, http=http)

    return build


async def test_a_run_past_max_duration_is_stuck_once(world: World, watch, clock) -> None:
    world.add_agent(id=AGENT, name="nightly")
    world.add_run(AGENT, status=9, run_id=1)
    stuck_rule = RuleConfig(name="two-hours", max_duration="2h")
    async with watch(stuck_rule) as app:
        await app.once()
        world.add_run(AGENT, status=1, run_id=2)  # starts now
        await tick(app, clock, 3600)
        assert of(app, "run.stuck") == []
        await tick(app, clock, 3601)  # 2 h and a bit
        (stuck,) = of(app, "run.stuck")
        await tick(app, clock, 600)
        assert len(of(app, "run.stuck")) == 1
    assert (stuck.run_id, stuck.get("rule"), stuck.get("limit")) == (
        "2",
        "two-hours",
        "max_duration 2h 0m",
    )
    assert stuck.get("running_s") >= 7200 and stuck.message.startswith("pending or running for 2h")
    assert stuck.to_dict()["started_at"] == "2026-11-23T12:00:00Z"  # as written to every sink
    async with watch(stuck_rule) as app:  # a restart: nothing again
        await tick(app, clock, 600)
        assert len(of(app, "run.stuck")) == 1
        world.set_status(AGENT, 2, 10)
        await tick(app, clock, 60)
        (finished,) = [e for e in of(app, "run.finished") if e.run_id == "2"]
    assert finished.get("was_stuck") is True and finished.duration_s > 7200


async def test_a_run_already_running_when_watcher_starts_can_be_stuck(
    world: World, watch, clock
) -> None:
    world.add_agent(id=AGENT, name="nightly")
    world.add_run(AGENT, status=1, run_id=7)  # started an hour before watcher's first poll
    clock.advance(3600)
    stuck_rule = RuleConfig(name="two-hours", max_duration="2h")
    async with watch(stuck_rule) as app:
        await app.once()  # its baseline: history, no event
        assert of(app, "run.stuck") == []
        await tick(app, clock, 3601)
        (stuck,) = of(app, "run.stuck")
        await tick(app, clock, 600)
    assert stuck.run_id == "7" and stuck.get("running_s") > 7200
    async with watch(stuck_rule) as app:  # a restart: not again
        await tick(app, clock, 600)
        assert len(of(app, "run.stuck")) == 1


async def test_a_run_longer_than_usual_is_stuck(world: World, watch, clock) -> None:
    world.add_agent(id=AGENT, name="quick")
    for run_id in range(1, 6):  # the last successes each took 60 s
        world.add_run(AGENT, status=10, run_id=run_id, runTimeSec=60)
    async with watch(RuleConfig(name="usual", max_duration_factor=3)) as app:
        await app.once()
        world.add_run(AGENT, status=1, run_id=9)
        await tick(app, clock, 120)
        assert of(app, "run.stuck") == []
        await tick(app, clock, 120)  # 240 s: past 3x 60 s
        (stuck,) = of(app, "run.stuck")
    assert stuck.get("limit") == "3x the median of 5 successes (1m 0s)"


async def test_a_cron_slot_without_a_run_is_missed_once(world: World, watch, clock) -> None:
    world.add_agent(id=AGENT, name="hourly")
    world.add_run(AGENT, status=9, run_id=1)
    clock.t = clock.t.replace(minute=30)  # 12:30
    hourly = RuleConfig(name="hourly", schedule="0 * * * *", grace="10m")
    async with watch(hourly) as app:
        await app.once()
        for _ in range(8):  # 12:30 → 13:10: the 13:00 slot passes its grace with no run
            await tick(app, clock, 300)
        (missed,) = of(app, "agent.missed_schedule")
        assert missed.get("expected_at") == "2026-11-23T13:00:00Z"
        # its id is a hash of (source, agent, type, slot): the same bytes across versions, or
        # an upgrade would report every slot it already reported once more
        assert missed.id == "620d530c7b2a22611c81f3f6"
        clock.advance(50 * 60)  # 14:00
        world.add_run(AGENT, status=1, run_id=2)  # starts 14:00, within grace
        for _ in range(4):
            await tick(app, clock, 300)
        assert len(of(app, "agent.missed_schedule")) == 1
    assert missed.agent_name == "hourly" and "0 * * * * UTC" in (missed.message or "")
    async with watch(hourly) as app:  # a restart: the 13:00 miss is not reported again
        await tick(app, clock, 300)
        assert len(of(app, "agent.missed_schedule")) == 1


async def test_a_run_first_listed_in_the_poll_that_judges_its_slot_counts(
    world: World, watch, clock
) -> None:
    world.add_agent(id=AGENT, name="hourly")
    world.add_run(AGENT, status=9, run_id=1)
    clock.t = clock.t.replace(minute=30)  # 12:30
    hourly = RuleConfig(name="hourly", schedule="0 * * * *", grace="10m")
    async with watch(hourly) as app:
        await app.once()
        for _ in range(7):  # 12:30 → 13:05
            await tick(app, clock, 300)
        clock.advance(290)
        world.add_run(AGENT, status=1, run_id=2)  # starts 13:09:50, late in its grace
        await tick(app, clock, 10)  # 13:10: the run is listed, and the 13:00 slot judged
        await tick(app, clock, 300)
        (started,) = [e for e in of(app, "run.discovered") if e.run_id == "2"]
        assert of(app, "agent.missed_schedule") == []
    assert started.ts == started.started_at + timedelta(seconds=10)


async def test_a_missed_slot_is_said_from_the_hints_without_waiting_for_the_sweep(
    world: World, tmp_path: Path, cloud_url: str, clock: FakeClock, http
) -> None:
    world.add_agent(id=AGENT, name="hourly")
    world.add_run(AGENT, status=9, run_id=1)
    world.add_agent(id=AGENT + 1, name="busy")
    clock.t = clock.t.replace(minute=30)  # 12:30
    settings = make_settings(tmp_path, source_config(cloud_url, sweep_interval=3600))
    settings.rules = [RuleConfig(name="hourly", agents=["hourly"], schedule="0 * * * *",
                                 grace="10m")]  # fmt: skip
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        for minute in range(41):  # 12:30 → 13:11, one poll a minute, the hints each time
            clock.advance(60)
            report = await app.poll(app.pollers[0])
            assert report.ok, report.error_line
            if minute == 20:
                world.add_run(AGENT + 1, status=1)  # another agent moves; this one does not
        (missed,) = of(app, "agent.missed_schedule")
    assert missed.get("expected_at") == "2026-11-23T13:00:00Z"
    runs_of_hourly = [c for c in world.calls if c.path == f"/api/v1/agent/{AGENT}/runs"]
    assert len(runs_of_hourly) == 1  # listed at the first start only: the hints said the rest


async def test_a_success_with_no_records_after_a_thousand_is_an_anomaly(
    world: World, watch, clock
) -> None:
    world.add_agent(id=AGENT, name="prices")
    for run_id in range(1, 11):
        world.add_run(AGENT, status=10, run_id=run_id, dataCount=1000 + run_id, exportCount=1000)
    rule = RuleConfig(name="records", min_records=1, records_drop=0.5)
    async with watch(rule) as app:
        await app.once()
        world.add_run(AGENT, status=10, run_id=11, dataCount=0, exportCount=0)
        await tick(app, clock, 15)
        world.add_run(AGENT, status=10, run_id=12, dataCount=990, exportCount=990)
        await tick(app, clock, 15)
        (anomaly,) = of(app, "run.anomaly")
    assert anomaly.run_id == "11" and anomaly.outcome.value == "success"  # type: ignore[union-attr]
    assert [c["check"] for c in anomaly.get("checks")] == ["min_records", "records_drop"]
    assert anomaly.message == (
        "0 records, below 1 (min_records); 0 records, below 503 (records_drop), the median "
        "1,006 of the last 10 successes"
    )
    async with watch(rule) as app:
        await tick(app, clock, 15)
        assert len(of(app, "run.anomaly")) == 1
