"""The rules' events as their alerts read, where they arrive: a real stuck run, a missed
schedule slot and an anomaly, driven against the simulator on an injected clock and posted by
apprise (json://) to a receiver on 127.0.0.1 — each with what the person on call acts on."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.app import App
from watcher.config import RuleConfig
from watcher_sim import World

from .conftest import FakeClock, make_settings, source_config, tick
from .test_notify import no_apprise_throttle, receiver, subscription, with_subs

__all__ = ["no_apprise_throttle", "receiver"]  # the fixtures, used by name

PRICES, NIGHTLY = 2537, 2538
LINK = "https://dashboard.sequentum.com/agents/{agent_id}/runs/{run_id}"
RULES = [
    RuleConfig(name="prices", agents=["prices"], max_duration="2h", min_records=1,
               records_drop=0.5),
    RuleConfig(name="hourly", agents=["nightly"], schedule="30 * * * *", grace="10m"),
]  # fmt: skip


@pytest.fixture
def alerted(world: World, tmp_path: Path, cloud_url: str, clock: FakeClock, http, receiver):
    """An App whose rule events are alerted to a json:// channel; and the alerts it posts."""
    world.add_agent(id=PRICES, name="prices")
    for run_id in range(1, 11):  # ten successes of about a thousand records
        world.add_run(PRICES, status=10, run_id=run_id, dataCount=1000 + run_id, runTimeSec=600)
    world.add_agent(id=NIGHTLY, name="nightly")
    world.add_run(NIGHTLY, status=10, run_id=50)
    rec, base = receiver
    url = f"json://{base.removeprefix('http://')}/rules"
    sub = subscription("ops", url, on=["run.stuck", "agent.missed_schedule", "run.anomaly"])
    settings = make_settings(tmp_path, source_config(cloud_url, dashboard_url=LINK))
    settings.rules = list(RULES)
    app = App(with_subs(settings, sub), clock=clock, http=http)
    return app, rec


def alert(rec, about: str) -> str:
    """The one alert posted whose title says `about`: its title and message."""
    found = [f"{b['title']}\n{b['message']}" for b in rec.bodies("/rules") if about in b["title"]]
    assert len(found) == 1, (about, rec.bodies("/rules"))
    return found[0]


def has(text: str, *needles: str) -> None:
    missing = [n for n in needles if n not in text]
    assert not missing, f"{missing} not in:\n{text}"


async def test_a_stuck_run_says_how_long_it_ran_and_its_limit(world, alerted, clock) -> None:
    app, rec = alerted
    async with app:
        await app.once()
        world.add_run(PRICES, status=1, run_id=11)  # starts 12:00, runs on
        await tick(app, clock, 3600)
        await tick(app, clock, 3601)  # 2 h and a second
        await tick(app, clock, 60)
    text = alert(rec, "is stuck")
    has(
        text,
        "prices (2537): run 11 is stuck (Running for 2h 0m)",
        "pending or running for 2h 0m, past max_duration 2h 0m",
        "Agent: prices (2537)",
        "Started: 2026-11-23 12:00:00 UTC",
        "Link: " + LINK.format(agent_id=PRICES, run_id=11),
    )


async def test_a_missed_slot_says_when_and_which_schedule(world, alerted, clock) -> None:
    app, rec = alerted
    async with app:
        await app.once()
        for _ in range(9):  # 12:00 → 12:45: the 12:30 slot passes its grace with no run
            await tick(app, clock, 300)
    text = alert(rec, "no run started")
    has(
        text,
        "nightly (2538): no run started for the 2026-11-23 12:30:00 UTC slot",
        "No run started within 10m 0s of its expected start.",
        "Agent: nightly (2538)",
        "Expected: 2026-11-23 12:30:00 UTC",
        "Schedule: 30 * * * * UTC (rule hourly)",
        "Last run: 50, Success, started 2026-11-23 12:00:00 UTC",
        "Link: " + LINK.format(agent_id=NIGHTLY, run_id=50),
    )


async def test_an_anomaly_says_the_value_the_threshold_and_the_history(
    world, alerted, clock
) -> None:
    app, rec = alerted
    async with app:
        await app.once()
        world.add_run(PRICES, status=10, run_id=11, dataCount=120, runTimeSec=600)
        await tick(app, clock, 15)
    text = alert(rec, "succeeded, but")
    has(
        text,
        "prices (2537): run 11 succeeded, but",
        "120 records, below 503 (records_drop), the median 1,006 of the last 10 successes",
        "Agent: prices (2537)",
        "Records 120",
        "Link: " + LINK.format(agent_id=PRICES, run_id=11),
    )
