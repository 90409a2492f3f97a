"""Ready-made worlds: the demo (a few named agents with lively runs) and bulk (benchmarks).

Both are deterministic given the world's seed and clock. `World.demo` and `World.bulk` are the
entry points; the builders here fill a freshly made world.
"""

from __future__ import annotations

import gc
from datetime import timedelta

from watcher_sim.model import COMPLETED, FAILED, STOPPED, SUCCESS
from watcher_sim.world import World

# (agent id, name, start URL). 2537 "steam" is the seed's own example agent.
DEMO_AGENTS: tuple[tuple[int, str, str], ...] = (
    (2537, "steam", "https://store.steampowered.com/charts/mostplayed"),
    (1596, "amazon-prices", "https://www.amazon.com/gp/bestsellers"),
    (2415, "news-headlines", "https://news.ycombinator.com/"),
    (5195, "real-estate", "https://www.zillow.com/homes/for_sale/"),
    (3301, "job-board", "https://www.indeed.com/jobs?q=python"),
)

# The path each demo agent's first run takes, so every kind of finish shows up early:
# success (finishes at ~5.3 ticks), failure (~4.7), stopped (~6.1), a short success that starts
# and finishes between two polls (~1.6), and a second success (~6.9).
FIRST_FATES: tuple[str, ...] = ("success", "failure", "stopped", "flash", "success")

# Finished history: what past runs ended as (Failure runs are archived to Failed by then).
_HISTORY_STATUSES = (COMPLETED, SUCCESS, SUCCESS, COMPLETED, FAILED, SUCCESS, STOPPED)


def build_demo(world: World) -> None:
    """Add the demo agents, each with 3–6 finished runs over the past days and a first start
    scheduled within the next two ticks (then one every 6–10 ticks)."""
    now = world.now()
    tick = world.tick
    for i, (agent_id, name, url) in enumerate(DEMO_AGENTS):
        created = now - timedelta(days=30 + i)
        world.add_agent(agent_id, name, startUrl=url, created=created, updated=created)
        past = sorted(world.rng.uniform(1, 72 * 60) for _ in range(world.rng.randint(3, 6)))
        for minutes_ago in reversed(past):
            status = world.rng.choice(_HISTORY_STATUSES)
            when = now - timedelta(minutes=minutes_ago)
            world.add_finished_run(agent_id, status, when, world.rng.uniform(5, 600))
        world.agents[agent_id].start_every = world.rng.uniform(6, 10) * tick
        first = now + timedelta(seconds=(0.3 + 0.4 * i) * tick)
        world.schedule_start(agent_id, first, FIRST_FATES[i % len(FIRST_FATES)], running_ticks=2)


def build_bulk(
    world: World,
    agents: int,
    runs_per_agent: int,
    active_fraction: float,
    start_every: float | None,
) -> None:
    """Add `agents` agents (ids from 10,000) with `runs_per_agent` bare finished runs an hour
    apart; about `active_fraction` of them also have a run in progress that `step()` finishes."""
    # Hundreds of thousands of small objects: without the cyclic collector running over and
    # over while they are made, building takes half the time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _fill_bulk(world, agents, runs_per_agent, active_fraction, start_every)
    finally:
        if collecting:
            gc.enable()


def _fill_bulk(
    world: World,
    agents: int,
    runs_per_agent: int,
    active_fraction: float,
    start_every: float | None,
) -> None:
    now = world.now()
    rng = world.rng
    tick = world.tick
    n_hist = len(_HISTORY_STATUSES)
    hours = [timedelta(hours=k) for k in range(runs_per_agent + 1)]
    for i in range(agents):
        agent_id = 10_000 + i
        created = now - timedelta(days=90)
        world.add_agent(agent_id, f"agent-{agent_id:05d}", created=created, updated=created)
        minutes = timedelta(minutes=i % 60)
        for k in range(runs_per_agent, 0, -1):
            status = _HISTORY_STATUSES[(i + k) % n_hist]
            when = now - hours[k] - minutes
            world.add_finished_run(agent_id, status, when, 30 + (i * k) % 300, files=False)
        if rng.random() < active_fraction:
            fate = rng.choices(("success", "failure", "stopped"), weights=(70, 20, 10))[0]
            began = now - timedelta(seconds=rng.uniform(0, 2 * tick))
            world.begin_run(world.agents[agent_id], began, fate)
        if start_every:
            world.agents[agent_id].start_every = start_every
            world.schedule_start(agent_id, now + timedelta(seconds=rng.uniform(0, start_every)))
