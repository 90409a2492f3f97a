"""Simulated platforms with scriptable worlds, for tests, demos and benchmarks: Sequentum
Cloud API v1 (`World`), the Agent Control Center (`AccWorld`) and the automation-runs API
(`AutomationWorld`).

world = World.demo()                      # or World(), then add_agent / add_run / inject
runner, base_url = await serve(world)     # http://127.0.0.1:PORT, key "sim-key"
acc = AccWorld.demo()                     # Bearer token "sim-acc-token"
auto = AutomationWorld.demo()             # X-API-Key "sim-automation-key"
"""

from watcher_sim.acc import make_acc_app
from watcher_sim.acc_world import AccWorld
from watcher_sim.automation import make_automation_app
from watcher_sim.automation_world import AutomationWorld
from watcher_sim.cloud import make_cloud_app
from watcher_sim.model import Fault, SimAgent, SimDiagnostics, SimFile, SimRun, SimVersion
from watcher_sim.server import autopilot, serve
from watcher_sim.world import World

__all__ = [
    "AccWorld",
    "AutomationWorld",
    "Fault",
    "SimAgent",
    "SimDiagnostics",
    "SimFile",
    "SimRun",
    "SimVersion",
    "World",
    "autopilot",
    "make_acc_app",
    "make_automation_app",
    "make_cloud_app",
    "serve",
]
