"""The three simulated platforms of `watcher demo`, side by side, and the sources that watch them.

Sequentum Cloud (`World.demo`), the Agent Control Center (`AccWorld.demo`, with job watching)
and the automation-runs API (`AutomationWorld.demo`) each run on their own port on 127.0.0.1
with an autopilot; within ~15 s at the default tick every one of them shows a success, a
failure and a stopped or cancelled run.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aiohttp import web

from watcher.config import SourceConfig
from watcher_sim.acc_world import AccWorld
from watcher_sim.automation_world import AutomationWorld
from watcher_sim.server import autopilot, serve
from watcher_sim.world import World


@dataclass(slots=True)
class DemoPlatforms:
    """The running simulators (by source name: base URL) and the sources configured for them."""

    sources: list[SourceConfig]
    urls: dict[str, str]
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
        # Unlimited for now: the daemon does not keep to the Cloud's request budget yet, and
        # polling five agents every second would have half of its requests refused.
        World.demo(seed=seed, tick=tick, rate_limit=None),
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
    except BaseException:
        await platforms.close()
        raise
    timing = {
        "poll_interval": max(1.0, 3 * tick),
        "poll_interval_active": 1,
        "jitter": 0,
    }
    acc_agents = [a.path for a in acc.agents.values()]
    acc_agents[0] = next(iter(acc.agents))  # one agent by GUID, the others by path
    platforms.sources = [
        SourceConfig(
            name="cloud",
            kind="sequentum_cloud",
            base_url=platforms.urls["cloud"],
            api_key=sorted(cloud.api_keys)[0],  # type: ignore[arg-type]
            agents=["*"],
            **timing,  # type: ignore[arg-type]
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
