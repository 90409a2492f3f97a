"""The crash test: a scripted workload of runs, the daemon SIGKILLed at random moments.

Afterwards every finish has reached the webhook receiver at least once, the duplicates are no
more than the kills (only a delivery in flight at a kill may repeat), and the state file passes
`PRAGMA integrity_check` after every kill.

This runs real processes in real time. CI runs a short version; the full one (1,000 runs, 100
kills) is `WATCHER_CRASH_RUNS=1000 WATCHER_CRASH_KILLS=100 pytest -m slow tests/test_crash.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from watcher_sim import World
from watcher_sim.cloud import make_cloud_app

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("WATCHER_CRASH_RUNS", "200"))
KILLS = int(os.environ.get("WATCHER_CRASH_KILLS", "12"))
AGENTS = 50
OUTCOMES = {6: "failure", 8: "stopped", 10: "success"}

pytestmark = pytest.mark.slow if KILLS > 20 else []


class Platform:
    """The simulator and a webhook receiver, on their own event loop in a thread."""

    def __init__(self) -> None:
        self.world = World(rate_limit=None)  # no limit: this test is about crashes
        self.world.api_keys = {"crash-key"}
        for agent in range(1, AGENTS + 1):
            self.world.add_agent(id=agent, name=f"agent-{agent}")
        self.received: list[tuple[str, str]] = []
        self.expected: dict[str, str] = {}
        self.loop = asyncio.new_event_loop()
        self.sim_url = self.hook_url = ""
        self._stop = threading.Event()

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        run_id, outcome = body["title"].split("|")[:2]
        self.received.append((run_id, outcome))
        return web.Response(text="ok")

    async def _start(self) -> None:
        sim = web.AppRunner(make_cloud_app(self.world), access_log=None)
        await sim.setup()
        await web.TCPSite(sim, "127.0.0.1", 0).start()
        hook_app = web.Application()
        hook_app.router.add_post("/hook", self._hook)
        hook = web.AppRunner(hook_app, access_log=None)
        await hook.setup()
        await web.TCPSite(hook, "127.0.0.1", 0).start()
        self.sim_url = f"http://127.0.0.1:{sim.addresses[0][1]}"
        self.hook_url = f"json://127.0.0.1:{hook.addresses[0][1]}/hook"
        self._runners = (sim, hook)

    async def workload(self, seed: int) -> None:
        """RUNS runs, spread over the agents, each running briefly and then finishing."""
        rng = random.Random(seed)
        pending: list[tuple[float, int, int, int]] = []
        started = 0
        while started < RUNS or pending:
            now = time.monotonic()
            if started < RUNS:
                agent = started % AGENTS + 1
                run = self.world.add_run(agent, status=1)
                final = rng.choice(list(OUTCOMES))
                pending.append((now + rng.uniform(0.1, 1.5), agent, run.id, final))
                self.expected[str(run.id)] = OUTCOMES[final]
                started += 1
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                _, agent, run_id, final = item
                self.world.set_status(agent, run_id, final)
            await asyncio.sleep(max(0.005, 8.0 / RUNS))

    def run_in_thread(self) -> threading.Thread:
        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._start())
            self.loop.run_forever()
            for runner in self._runners:
                self.loop.run_until_complete(runner.cleanup())

        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not self.hook_url and time.monotonic() < deadline:
            time.sleep(0.01)
        return thread


@pytest.fixture
def platform() -> Iterator[Platform]:
    p = Platform()
    thread = p.run_in_thread()
    yield p
    p.loop.call_soon_threadsafe(p.loop.stop)
    thread.join(10)


def write_config(tmp_path: Path, p: Platform) -> Path:
    config = tmp_path / "watcher.toml"
    config.write_text(
        f"""
[watcher]
state_path = "{tmp_path / "state.db"}"
events_path = "{tmp_path / "events.jsonl"}"
log_format = "json"
log_level = "warning"
shutdown_timeout = 2

[[sources]]
name = "cloud"
kind = "sequentum_cloud"
base_url = "{p.sim_url}"
api_key = "crash-key"
agents = ["*"]
poll_interval = 1
poll_interval_active = 1
jitter = 0
retries = 0
requests_per_minute = 0  # its simulated platform sets no limit: this test is about crashes
concurrency = 16

[[subscriptions]]
name = "crash"
urls = ["{p.hook_url}"]
on = ["failure", "stopped", "success"]
title = "{{{{ event.run_id }}}}|{{{{ event.outcome }}}}"
group_threshold = 100000
"""
    )
    return config


def daemon(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "watcher", "--config", str(config), "run"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def integrity(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def known_agents(path: Path) -> int:
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM agents").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_sigkill_at_random_moments_loses_nothing(platform: Platform, tmp_path: Path) -> None:
    config = write_config(tmp_path, platform)
    state = tmp_path / "state.db"
    proc = daemon(config)
    deadline = time.monotonic() + 30
    while known_agents(state) < AGENTS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert known_agents(state) == AGENTS, "the daemon never baselined"

    work = asyncio.run_coroutine_threadsafe(platform.workload(seed=KILLS), platform.loop)
    rng = random.Random(RUNS)
    kills = 0
    while kills < KILLS:
        time.sleep(rng.uniform(0.05, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert integrity(state) == "ok", f"state file damaged after kill {kills}"
        proc = daemon(config)
    work.result(timeout=120)

    # Let the last daemon catch up and deliver everything, then stop it cleanly.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if {r for r, _ in platform.received} >= platform.expected.keys():
            break
        time.sleep(0.1)
    time.sleep(1.5)  # anything still in flight lands before the count
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert integrity(state) == "ok"

    received = Counter(platform.received)
    got = {run_id: outcome for run_id, outcome in received}
    missing = sorted(set(platform.expected) - set(got), key=int)
    assert not missing, f"{len(missing)} finishes never arrived, e.g. {missing[:5]}"
    assert got == platform.expected  # and each with the right outcome
    duplicates = sum(received.values()) - len(received)
    print(f"\ncrash test: {RUNS} runs, {kills} SIGKILLs, {len(received)} finishes delivered, "
          f"{duplicates} duplicates, state file sound after every kill")  # fmt: skip
    assert duplicates <= kills, f"{duplicates} duplicates for {kills} kills"
    assert len(received) == RUNS
