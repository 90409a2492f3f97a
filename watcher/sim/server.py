"""Run a simulated Sequentum Cloud on a local port, and the autopilot that moves its world on."""

from __future__ import annotations

import asyncio

from aiohttp import web

from watcher.sim.cloud import make_cloud_app
from watcher.sim.world import World


async def serve(world: World, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve `world` over HTTP; return the runner (call `await runner.cleanup()` to stop) and the
    base URL. Port 0 picks a free port; the URL names the port actually bound."""
    runner = web.AppRunner(make_cloud_app(world), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}"


async def autopilot(world: World, interval: float = 0.5) -> None:
    """Call `world.step()` every `interval` seconds, until cancelled."""
    while True:
        world.step()
        await asyncio.sleep(interval)
