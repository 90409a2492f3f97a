"""Faults of the request budget that `bench/bench.py budget` found (see bench/README.md), each
kept as the behaviour it should have: a 429 waited out whatever the limit, the sweep never
starved by active agents, a finish before an agent's first listing still alerted.
"""

from __future__ import annotations


async def test_an_unlimited_budget_still_waits_out_a_429(world, app_factory, no_sleep):
    world.add_agent(id=2537, name="steam")
    world.add_run(2537, status=9, run_id=100)
    world.inject("/api/v1/agent/2537/runs", kind="http", status=429, headers={"Retry-After": "7"})
    async with app_factory(use_hints=False, requests_per_minute=0, retries=3) as app:
        (report,) = await app.once()
    assert report.ok
    runs = [c for c in world.calls if c.path == "/api/v1/agent/2537/runs"]
    assert [c.status for c in runs] == [429, 200]
    assert no_sleep.delays == [7.0]  # the platform said: not before 7 s


async def test_the_sweep_reaches_every_agent_within_sweep_interval(world, app_factory, clock):
    # 40 agents, 10 of them with a long run in progress; 20 requests a minute: 5 a cycle of
    # 15 s, of which the agent listing takes 1 — the 1,000-agent fleet of the benchmark
    # (50 active, 90 a minute) scaled down.
    for agent_id in range(1, 41):
        world.add_agent(id=agent_id, name=f"agent-{agent_id}")
        world.add_run(agent_id, status=9, run_id=100 + agent_id)
        if agent_id <= 10:
            world.add_run(agent_id, status=1, run_id=200 + agent_id)
    async with app_factory(requests_per_minute=20, sweep_interval=900) as app:
        poller = app.pollers[0]
        for _ in range(64):  # 16 minutes of 15 s ticks
            await poller.poll()
            clock.advance(15)
    listed = {
        int(c.path.split("/")[4])
        for c in world.calls
        if c.path.endswith("/runs") and c.status == 200
    }
    assert listed == set(range(1, 41))


async def test_a_finish_before_an_agents_first_listing_is_alerted(world, app_factory, clock):
    agents = [str(agent_id) for agent_id in range(1, 21)]
    for agent_id in range(1, 21):
        world.add_agent(id=agent_id, name=f"agent-{agent_id}")
        world.add_run(agent_id, status=9, run_id=100 + agent_id)
    # 10 requests a minute: the first poll lists a few agents, the rest follow over minutes.
    async with app_factory(agents=agents, use_hints=False, requests_per_minute=10) as app:
        poller = app.pollers[0]
        await poller.poll()
        waiting = [a for a in agents if a not in poller.runs]
        assert waiting  # not every agent could be listed yet
        clock.advance(1)
        world.add_run(int(waiting[-1]), status=6, run_id=999)  # fails after watcher started
        for _ in range(20):  # five minutes: every agent is listed by then
            clock.advance(15)
            await poller.poll()
        assert set(poller.runs) == set(agents)
        finished = [e.run_id for e in app.store.events() if e.type == "run.finished"]
    assert finished == ["999"]
