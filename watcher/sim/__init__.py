"""A simulated Sequentum Cloud (API v1) with a scriptable world, for tests, demos and benchmarks.

world = World.demo()                      # or World(), then add_agent / add_run / inject
runner, base_url = await serve(world)     # http://127.0.0.1:PORT, key "sim-key"
"""

from watcher.sim.cloud import make_cloud_app
from watcher.sim.model import Fault, SimAgent, SimDiagnostics, SimFile, SimRun, SimVersion
from watcher.sim.server import autopilot, serve
from watcher.sim.world import World

__all__ = [
    "Fault",
    "SimAgent",
    "SimDiagnostics",
    "SimFile",
    "SimRun",
    "SimVersion",
    "World",
    "autopilot",
    "make_cloud_app",
    "serve",
]
