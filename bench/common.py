"""What the benchmarks share: the simulator in a child process, the sequential loop a user would
write instead of watcher, and a line about the machine."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent


@dataclass
class SimProcess:
    """`bench/simserver.py` running in a child process."""

    url: str
    key: str
    proc: subprocess.Popen[str]

    def stats(self) -> tuple[int, int]:
        """(requests answered or refused so far, of them refused with 429)."""
        assert self.proc.stdout is not None
        self.proc.send_signal(signal.SIGUSR1)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "STATS":
            raise RuntimeError(f"simulator said {line!r}")
        return int(line[1]), int(line[2])


@contextlib.contextmanager
def sim_process(agents: int, latency: float, *, rate_limit: int = 0) -> Iterator[SimProcess]:
    """A bulk simulator in a child process (`rate_limit` 0: it never says no)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "simserver.py"),
            "--agents",
            str(agents),
            "--latency",
            str(latency),
            "--rate-limit",
            str(rate_limit),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError("simulator did not start")
        yield SimProcess(line[1], line[2], proc)
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def simulator(agents: int, latency: float) -> Iterator[tuple[str, str]]:
    """A bulk simulator in a child process that never says no: (base_url, api_key)."""
    with sim_process(agents, latency) as sim:
        yield sim.url, sim.key


def naive_cycle(url: str, key: str, agent_ids: list[str], state_file: Path) -> float:
    """One `requests` call per agent in a loop, statuses compared with a JSON file."""
    started = time.perf_counter()
    headers = {"Authorization": f"ApiKey {key}"}
    known = json.loads(state_file.read_text()) if state_file.exists() else {}
    for agent_id in agent_ids:
        runs = requests.get(
            f"{url}/api/v1/agent/{agent_id}/runs?maxRecords=20", headers=headers, timeout=30
        ).json()
        for run in runs:
            key_ = f"{agent_id}/{run['id']}"
            if known.get(key_) != run["status"]:
                known[key_] = run["status"]
    state_file.write_text(json.dumps(known))
    return time.perf_counter() - started


def cpu(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{datetime.now().astimezone():%Y-%m-%d}"
    )
