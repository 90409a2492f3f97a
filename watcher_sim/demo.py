"""The three simulated platforms of `watcher demo`, side by side, and the sources that watch them.

Sequentum Cloud (`World.demo`), the Agent Control Center (`AccWorld.demo`, with job watching)
and the automation-runs API (`AutomationWorld.demo`) each run on their own port on 127.0.0.1
with an autopilot; within ~15 s at the default tick every one of them shows a success, a
failure and a stopped or cancelled run. The Cloud limits requests as the platform does (100 a
minute per key).

Three more Cloud agents show what no status shows, with the rules that catch them: a run that
never ends ("slow-crawler", stuck after 20 ticks), a success that brings no records after a
history of hundreds ("empty-export", an anomaly), and a report expected every minute — and
once by its platform schedule, a few ticks in — that never starts ("minutely-report", a
missed schedule).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta

from aiohttp import web

from watcher.config import RuleConfig, SourceConfig
from watcher_sim.acc_world import AccWorld
from watcher_sim.automation_world import AutomationWorld
from watcher_sim.server import autopilot, serve
from watcher_sim.world import World


@dataclass(slots=True)
class DemoPlatforms:
    """The running simulators (by source name: base URL) and the sources configured for them."""

    sources: list[SourceConfig]
    urls: dict[str, str]
    rules: list[RuleConfig] = field(default_factory=list)
    runners: list[web.AppRunner] = field(default_factory=list)
    pilots: list[asyncio.Task[None]] = field(default_factory=list)

    def describe(self) -> str:
        return ", ".join(f"{name} at {url}" for name, url in self.urls.items())

    async def close(self) -> None:
        for pilot in self.pilots:
            pilot.cancel()
        for pilot in self.pilots:
            with contextlib.suppress(asyncio.CancelledError):
                await pilot
        for runner in self.runners:
            await runner.cleanup()


async def start_platforms(*, seed: int = 7, tick: float = 1.5, port: int = 0) -> DemoPlatforms:
    """Serve the three demo worlds (on PORT, PORT+1, PORT+2, or free ports when 0), start their
    autopilots, and configure one source for each: "cloud", "acc" and "automation"."""
    cloud, acc, automation = (
        World.demo(seed=seed, tick=tick),
        AccWorld.demo(seed=seed, tick=tick),
        AutomationWorld.demo(seed=seed, tick=tick),
    )
    platforms = DemoPlatforms([], {})
    try:
        for offset, (name, world) in enumerate(
            (("cloud", cloud), ("acc", acc), ("automation", automation))
        ):
            runner, url = await serve(world, port=port + offset if port else 0)
            platforms.runners.append(runner)
            platforms.urls[name] = url
            platforms.pilots.append(asyncio.create_task(autopilot(world, interval=0.25)))
        platforms.pilots.append(asyncio.create_task(_what_no_status_shows(cloud, tick)))
    except BaseException:
        await platforms.close()
        raise
    platforms.rules = [
        RuleConfig(name="stuck", agents=["slow-crawler"], max_duration=20 * tick),
        RuleConfig(name="records", agents=["empty-export"], min_records=1, records_drop=0.5),
        RuleConfig(
            name="minutely",
            agents=["minutely-report"],
            schedule="* * * * *",
            grace=5 * tick,
            platform_schedules=True,
        ),
    ]
    timing = {
        "poll_interval": max(1.0, 3 * tick),
        "poll_interval_active": 1,
        "sweep_interval": max(1.0, 3 * tick),
        "jitter": 0,
    }
    # The Cloud allows 100 requests a minute: a cycle every second would spend 60 of them on
    # its change hints alone and leave one listing a cycle; every 3 s, four.
    slower = max(3.0, 3 * tick)
    cloud_timing = {**timing, "poll_interval_active": 3.0, "poll_interval": slower,
                    "sweep_interval": slower}  # fmt: skip
    acc_agents = [a.path for a in acc.agents.values()]
    acc_agents[0] = next(iter(acc.agents))  # one agent by GUID, the others by path
    platforms.sources = [
        SourceConfig(
            name="cloud",
            kind="sequentum_cloud",
            base_url=platforms.urls["cloud"],
            api_key=sorted(cloud.api_keys)[0],  # type: ignore[arg-type]
            agents=["*"],
            **cloud_timing,  # type: ignore[arg-type]
        ),
        SourceConfig(
            name="acc",
            kind="sequentum_acc",
            base_url=platforms.urls["acc"],
            api_key=sorted(acc.tokens)[0],  # type: ignore[arg-type]
            agents=acc_agents,
            watch_jobs=True,
            **timing,  # type: ignore[arg-type]
        ),
        SourceConfig(
            name="automation",
            kind="automation_runs",
            base_url=platforms.urls["automation"],
            api_key=sorted(automation.api_keys)[0],  # type: ignore[arg-type]
            agents=["*"],
            **timing,  # type: ignore[arg-type]
        ),
    ]
    return platforms


async def _what_no_status_shows(cloud: World, tick: float) -> None:
    """The three agents only rules catch: one run that hangs from the start, a success with
    no records after a few ticks, and an agent that never runs (its schedule is the rule's)."""
    now = cloud.now()
    for agent_id, name in (
        (4242, "slow-crawler"),
        (4343, "empty-export"),
        (4444, "minutely-report"),
    ):
        cloud.add_agent(agent_id, name)
    for hours_ago in range(6, 0, -1):
        created = now - timedelta(hours=hours_ago)
        cloud.add_run(4343, status=10, dataCount=500 + hours_ago, created=created)
    cloud.add_run(4242, status=1)  # running, and never told to stop
    # The platform says the report runs in a few ticks; it never does.
    cloud.add_schedule(4444, start=now + timedelta(seconds=6 * tick), fires=False,
                       name="report after the morning import")  # fmt: skip
    await asyncio.sleep(8 * tick)
    cloud.add_run(4343, status=10, dataCount=0, exportCount=0)
