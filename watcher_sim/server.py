"""Run a simulated platform on a local port, and the autopilot that moves its world on.

`serve(world)` picks the app for the world's type: Sequentum Cloud (`World`), the Agent Control
Center (`AccWorld`) or the automation-runs API (`AutomationWorld`)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from watcher_sim.acc import make_acc_app
from watcher_sim.acc_world import AccWorld
from watcher_sim.automation import make_automation_app
from watcher_sim.automation_world import AutomationWorld
from watcher_sim.cloud import make_cloud_app
from watcher_sim.world import World


class Steppable(Protocol):
    """A world the autopilot can move on."""

    def step(self) -> int: ...


async def serve(
    world: World | AccWorld | AutomationWorld, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve `world` over HTTP; return the runner (call `await runner.cleanup()` to stop) and the
    base URL. Port 0 picks a free port; the URL names the port actually bound."""
    if isinstance(world, AccWorld):
        app = make_acc_app(world)
    elif isinstance(world, AutomationWorld):
        app = make_automation_app(world)
    else:
        app = make_cloud_app(world)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}"


async def autopilot(world: Steppable, interval: float = 0.5) -> None:
    """Call `world.step()` every `interval` seconds, until cancelled."""
    while True:
        world.step()
        await asyncio.sleep(interval)
