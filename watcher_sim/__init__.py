"""Simulated platforms with scriptable worlds, for tests, demos and benchmarks: Sequentum
Cloud API v1 (`World`), the Agent Control Center (`AccWorld`) and the automation-runs API
(`AutomationWorld`).

A second implementation of the platforms, written from their API documents: it shares no code
and no status table with the product (`watcher`), so that a mistake in either shows up as a test
failure. It limits, pages, sorts and refuses as the platforms do.

world = World.demo()                      # or World(), then add_agent / add_run / inject
runner, base_url = await serve(world)     # http://127.0.0.1:PORT, key "sim-key"
world.calls, world.throttled              # every request seen; how many got 429
acc = AccWorld.demo()                     # Bearer token "sim-acc-token"
auto = AutomationWorld.demo()             # X-API-Key "sim-automation-key"
"""

from watcher_sim.acc import make_acc_app
from watcher_sim.acc_model import AccSchedule
from watcher_sim.acc_world import AccWorld
from watcher_sim.automation import make_automation_app
from watcher_sim.automation_world import AutomationWorld
from watcher_sim.cloud import make_cloud_app
from watcher_sim.faults import Call
from watcher_sim.model import (
    Fault,
    SimAgent,
    SimDiagnostics,
    SimFile,
    SimRun,
    SimSchedule,
    SimVersion,
)
from watcher_sim.server import autopilot, serve
from watcher_sim.world import World

__all__ = [
    "AccSchedule",
    "AccWorld",
    "AutomationWorld",
    "Call",
    "Fault",
    "SimAgent",
    "SimDiagnostics",
    "SimFile",
    "SimRun",
    "SimSchedule",
    "SimVersion",
    "World",
    "autopilot",
    "make_acc_app",
    "make_automation_app",
    "make_cloud_app",
    "serve",
]
