"""Delivery from the outbox: retried with backoff, exactly once on recovery, sinks independent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from watcher.app import App
from watcher.events import Event
from watcher.sinks.base import DeliveryError, Sink
from watcher.upkeep import housekeeping

from .conftest import FakeClock, make_settings, source_config


class Recorder(Sink):
    """A sink that records what it got; it can be made to fail or to hang."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[str] = []
        self.fail: DeliveryError | None = None
        self.gate: asyncio.Event | None = None

    async def deliver(self, events: Sequence[Event], done) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.got.extend(e.id for e in events)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def steam(world):
    world.add_agent(id=1, name="steam")
    return world


async def test_a_failing_events_file_is_retried_then_written_once(
    steam, cloud_url, clock: FakeClock, http, tmp_path: Path
) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the events directory should be")
    settings = make_settings(tmp_path, source_config(cloud_url))
    settings.watcher.events_path = blocker / "events.jsonl"
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        steam.add_run(1, status=6, run_id=5)
        clock.advance(15)
        await app.once()
        assert app.store is not None and app.dispatcher is not None
        assert app.store.outbox_depth() == 3  # baselined, discovered, finished: all kept
        assert all(p.attempts >= 1 for p in app.store.due(clock().timestamp() + 3600))
        assert app.store.due(clock().timestamp()) == []  # backing off, not hammering
        for _ in range(3):  # still broken: attempts grow, nothing lost
            clock.advance(3600)
            await app.dispatcher.drain()
        blocker.unlink()
        clock.advance(3600)
        assert await app.dispatcher.drain() == 3
        assert app.store.outbox_depth() == 0
    written = lines(blocker / "events.jsonl")
    assert [e["type"] for e in written] == ["source.baselined", "run.discovered", "run.finished"]


async def test_a_hanging_sink_does_not_delay_the_others(
    steam, cloud_url, clock: FakeClock, http, tmp_path: Path
) -> None:
    slow = Recorder("slow")
    slow.gate = asyncio.Event()
    settings = make_settings(tmp_path, source_config(cloud_url))
    async with App(settings, clock=clock, http=http, extra_sinks=[slow]) as app:
        await app.pollers[0].poll(force=True)
        assert app.dispatcher is not None
        draining = asyncio.create_task(app.dispatcher.drain())
        for _ in range(100):
            await asyncio.sleep(0.005)
            if lines(tmp_path / "events.jsonl"):
                break
        assert [e["type"] for e in lines(tmp_path / "events.jsonl")] == ["source.baselined"]
        assert slow.got == [] and not draining.done()
        slow.gate.set()
        assert await draining == 2
        assert len(slow.got) == 1


async def test_give_up_after_max_age_and_on_permanent_errors(
    steam, cloud_url, clock: FakeClock, http, tmp_path: Path
) -> None:
    flaky, broken = Recorder("flaky"), Recorder("broken")
    flaky.fail = DeliveryError("503 from the channel")
    broken.fail = DeliveryError("400: bad payload", retryable=False)
    settings = make_settings(tmp_path, source_config(cloud_url))
    async with App(settings, clock=clock, http=http, extra_sinks=[flaky, broken]) as app:
        await app.once()
        assert app.store is not None and app.dispatcher is not None
        assert app.store.outbox_depth() == 1  # broken gave up at once; flaky waits
        clock.advance(23 * 3600)
        await app.dispatcher.drain()
        assert app.store.outbox_depth() == 1
        clock.advance(3600)
        await app.dispatcher.drain()
        assert app.store.outbox_depth() == 0  # 24 h: abandoned, with an error line
    assert flaky.got == broken.got == []


async def test_housekeeping_forgets_old_delivered_events_only(
    steam, cloud_url, clock: FakeClock, http, tmp_path: Path
) -> None:
    stuck = Recorder("stuck")
    stuck.fail = DeliveryError("down")
    settings = make_settings(tmp_path, source_config(cloud_url))
    async with App(settings, clock=clock, http=http, extra_sinks=[stuck]) as app:
        await app.once()
        steam.add_run(1, status=9, run_id=6)
        clock.advance(15)
        await app.once()
        assert app.store is not None
        stuck_rows = app.store.outbox_depth()
        clock.advance(timedelta(days=31).total_seconds())
        await housekeeping(app)
        # Undelivered events stay however old they are; delivered ones are forgotten.
        assert len(app.store.events()) == stuck_rows == 3


async def test_housekeeping_forgets_runs_that_left_every_listing(
    world, cloud_url, clock: FakeClock, http, tmp_path: Path
) -> None:
    world.add_agent(id=1, name="busy")
    for run_id in range(1, 301):
        world.add_run(1, status=9, run_id=run_id)
    world.add_run(1, status=1, run_id=301)
    settings = make_settings(tmp_path, source_config(cloud_url, max_records=1000))
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        assert app.store is not None and app.store.run_count() == 301
        app.pollers[0].source.config.max_records = 50
        await housekeeping(app)
        assert app.store.run_count() == 4 * 50  # the newest 200, the running one among them
        assert "301" in app.pollers[0].runs["1"] and "1" not in app.pollers[0].runs["1"]
        clock.advance(60)
        (report,) = await app.once()
        assert report.events == []  # nothing forgotten comes back as "new"
