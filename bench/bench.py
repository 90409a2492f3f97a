"""watcher's benchmarks, against the simulator on 127.0.0.1. Run by hand, not in CI.

    python bench/bench.py cycle   [--agents 100 1000 10000] [--latency 0.02] [--repeat 3]
    python bench/bench.py steady  [--agents 1000] [--minutes 10]
    python bench/bench.py latency [--agents 100] [--seconds 120] [--interval 15]
    python bench/bench.py budget  [--agents 1000] [--minutes 30] [--drain 45]
    python bench/bench.py once    [--agents 1000] [--latency 0.02] [--repeat 3]

`cycle`: one full poll cycle — the first (baseline) and a second with no changes — wall time,
CPU time of the watcher process (the simulator runs in its own process), HTTP requests, bytes,
state-file writes; peak RSS; and the same cycle done the simplest way a user would write it
(`requests` in a loop, statuses compared with a JSON file), as a ratio.
`steady`: requests per hour with adaptive polling versus fixed polling, over simulated time.
`latency`: from a status change in the simulator to the alert arriving at a local webhook
receiver, p50 and p99, in real time.
`cycle`, `steady` and `latency` measure the polling before the request budget (no change hints,
no budget) against a server that never says no, as their figures in bench/README.md were.
`budget` (bench/budget.py): the request budget and change hints against a Cloud that allows
100 requests a minute, over simulated time, versus the fixed polling.
`once` (bench/once.py): `watcher once` as a whole process, versus the sequential loop.
Every command prints Markdown table rows for bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from budget import bench_budget
from common import cpu, machine, naive_cycle, peak_rss_mb, simulator
from once import bench_once

from watcher import logs
from watcher.app import App
from watcher.config import Settings, SourceConfig, SubscriptionConfig, WatcherSection
from watcher.daemon import Daemon
from watcher.sources.http import HttpClient
from watcher_sim import World, serve

# --- helpers ---------------------------------------------------------------------------------


def settings_for(tmp: Path, url: str, key: str, **source: object) -> Settings:
    """The settings of `cycle`, `steady` and `latency`: the polling before the request budget
    (no change hints, no budget), as their figures in bench/README.md were measured."""
    fields: dict[str, object] = {
        "name": "cloud",
        "kind": "sequentum_cloud",
        "base_url": url,
        "api_key": key,
        "agents": ["*"],
        "concurrency": 64,
        "max_records": 20,
        "retries": 0,
        "jitter": 0,
        "use_hints": False,
        "requests_per_minute": 0,
    }
    fields.update(source)
    return Settings(
        watcher=WatcherSection(
            state_path=tmp / "state.db",
            events_path=tmp / "events.jsonl",
            log_format="json",
            log_level="error",
        ),
        sources=[SourceConfig(**fields)],  # type: ignore[arg-type]
    )


# --- cycle -----------------------------------------------------------------------------------


async def one_cycle(app: App) -> dict[str, float]:
    assert app.store is not None and app._http is not None
    http = app._http
    before = (time.perf_counter(), cpu(), http.requests, http.bytes, app.store.counters)
    (report,) = await app.once()
    assert report.ok, report.error_line
    wall, cpu_, reqs, bytes_, counters = before
    return {
        "wall": time.perf_counter() - wall,
        "cpu": cpu() - cpu_,
        "requests": http.requests - reqs,
        "bytes": http.bytes - bytes_,
        "transactions": app.store.counters.transactions - counters.transactions,
        "rows": app.store.counters.rows - counters.rows,
    }


async def cycle_phase(state: Path, url: str, key: str, cycles: int, concurrency: int) -> dict:
    """In a fresh process: open the state, run `cycles` poll cycles, report the last one."""
    settings = settings_for(state, url, key, concurrency=concurrency)
    async with aiohttp.ClientSession() as session:
        app = App(settings, http=HttpClient(session))
        async with app:
            for _ in range(cycles):
                metrics = await one_cycle(app)
            metrics["runs"] = sum(len(r) for r in app.pollers[0].runs.values())
            metrics["agent_ids"] = list(app.pollers[0].runs)
    metrics["rss"] = peak_rss_mb()
    return metrics


def run_phase(state: Path, url: str, key: str, cycles: int, concurrency: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "_phase", str(state), url, key, str(cycles), str(concurrency)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


async def bench_cycle(agents: int, latency: float, concurrency: int, repeat: int) -> list[str]:
    """The baseline in one process; then, as after a restart, a process that knows every run:
    its first cycle (listings parsed and diffed, nothing written) and a second one (identical
    listings skipped unparsed). Each phase reports its own peak RSS. The whole sequence runs
    `repeat` times on fresh state; wall and CPU are the median of the runs."""
    labels = ("first start (baseline)", "after a restart, no changes", "steady, no changes")
    runs: list[list[dict]] = [[] for _ in labels]
    with simulator(agents, latency) as (url, key):
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                state = Path(tmp)
                for phase, cycles in enumerate((1, 1, 2)):
                    runs[phase].append(run_phase(state, url, key, cycles, concurrency))
        agent_ids = runs[0][0]["agent_ids"]
        sample = agent_ids[: min(len(agent_ids), 1000)]
        with tempfile.TemporaryDirectory() as tmp:
            naive_state = Path(tmp) / "naive.json"
            naive_cycle(url, key, sample[:10], naive_state)  # warm up the connection
            naive = naive_cycle(url, key, sample, naive_state) * len(agent_ids) / len(sample)
    scaled = " (from 1,000)" if len(sample) < len(agent_ids) else ""
    rows = []
    for label, measured in zip(labels, runs, strict=True):
        m = {k: statistics.median(r[k] for r in measured) for k in ("wall", "cpu", "rss")}
        last = measured[-1]
        spread = (
            f" ({min(r['wall'] for r in measured):.2f}–{max(r['wall'] for r in measured):.2f})"
            if repeat > 1
            else ""
        )
        rows.append(
            f"| {agents:,} | {label} | {m['wall']:.2f} s{spread} | {m['cpu']:.2f} s | "
            f"{last['requests']:,.0f} | {last['bytes'] / 1e6:.1f} MB | "
            f"{last['transactions']:.0f} tx / {last['rows']:,.0f} rows | {m['rss']:.0f} MB | "
            f"{naive:.1f} s{scaled} | {naive / m['wall']:.0f}x |"
        )
    return rows


# --- steady state ----------------------------------------------------------------------------


class SimClock:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 23, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t


async def bench_steady(agents: int, minutes: float) -> list[str]:
    rows = []
    with simulator(agents, 0.0) as (url, key):
        for label, interval, active in (
            ("adaptive (60 s / 15 s)", 60, 15),
            ("fixed (15 s)", 15, 15),
        ):
            with tempfile.TemporaryDirectory() as tmp:
                clock = SimClock()
                settings = settings_for(
                    Path(tmp), url, key, poll_interval=interval, poll_interval_active=active
                )
                async with aiohttp.ClientSession() as session:
                    http = HttpClient(session)
                    async with App(settings, clock=clock, http=http) as app:
                        poller = app.pollers[0]
                        await poller.poll()  # baseline, not counted
                        start = http.requests
                        ticks = int(minutes * 60 / active)
                        for _ in range(ticks):
                            clock.t += timedelta(seconds=active)
                            await poller.poll()
                        per_hour = (http.requests - start) * 60 / minutes
            rows.append(f"| {agents:,} | {label} | {per_hour:,.0f} requests/hour |")
    return rows


# --- detection latency -----------------------------------------------------------------------


async def bench_latency(agents: int, seconds: float, interval: float) -> list[str]:
    world = World.bulk(agents, runs_per_agent=5, active_fraction=0.0, seed=2, rate_limit=None)
    runner, url = await serve(world)
    changed: dict[str, float] = {}
    latencies: list[float] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        for run_id, at in list(changed.items()):
            if f"run {run_id}" in body.get("title", "") + body.get("message", ""):
                latencies.append(time.monotonic() - at)
                del changed[run_id]
        return web.Response(text="ok")

    hook = web.Application()
    hook.router.add_post("/hook", receive)
    hook_runner = web.AppRunner(hook)
    await hook_runner.setup()
    site = web.TCPSite(hook_runner, "127.0.0.1", 0)
    await site.start()
    port = hook_runner.addresses[0][1]
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(
            Path(tmp),
            url,
            sorted(world.api_keys)[0],
            poll_interval=interval,
            poll_interval_active=interval,
        )
        settings.subscriptions = [
            SubscriptionConfig(
                name="bench",
                urls=[f"json://127.0.0.1:{port}/hook"],
                on=["failure"],
                group_threshold=1000,
            )
        ]
        stop = asyncio.Event()
        async with App(settings) as app:
            daemon = asyncio.create_task(Daemon(app).run(stop))
            await asyncio.sleep(2)  # baseline
            rng = random.Random(3)
            agent_ids = list(world.agents)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                run = world.add_run(rng.choice(agent_ids), status=6)
                changed[str(run.id)] = time.monotonic()
            await asyncio.sleep(interval + 3)
            stop.set()
            await daemon
    await hook_runner.cleanup()
    await runner.cleanup()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return [
        f"| {agents:,} | {interval:.0f} s | {len(latencies)} | {p50:.2f} s | {p99:.2f} s | "
        f"{len(changed)} missed |"
    ]


def main() -> None:
    logs.configure("json", "error", sys.stderr)  # stdout is for the table rows
    if sys.argv[1:2] == ["_phase"]:  # a cycle phase in a child process (see run_phase)
        state, url, key, cycles, concurrency = sys.argv[2:7]
        m = asyncio.run(cycle_phase(Path(state), url, key, int(cycles), int(concurrency)))
        print(json.dumps(m))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cycle")
    c.add_argument("--agents", type=int, nargs="+", default=[100, 1000, 10000])
    c.add_argument("--latency", type=float, default=0.02)
    c.add_argument("--concurrency", type=int, default=64)
    c.add_argument("--repeat", type=int, default=3, help="runs per phase; the median is shown")
    s = sub.add_parser("steady")
    s.add_argument("--agents", type=int, default=1000)
    s.add_argument("--minutes", type=float, default=10)
    lat = sub.add_parser("latency")
    lat.add_argument("--agents", type=int, default=100)
    lat.add_argument("--seconds", type=float, default=120)
    lat.add_argument("--interval", type=float, default=15)
    b = sub.add_parser("budget")
    b.add_argument("--agents", type=int, default=1000)
    b.add_argument("--minutes", type=float, default=30, help="simulated minutes measured")
    b.add_argument("--drain", type=float, default=45, help="simulated minutes, at most, after")
    b.add_argument("--tick", type=float, default=240, help="seconds each stage of a run lasts")
    b.add_argument("--start-every", type=float, default=21600, help="seconds between runs")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--only", type=int, nargs="*", help="variants to run (1, 2, 3); default all")
    o = sub.add_parser("once")
    o.add_argument("--agents", type=int, default=1000)
    o.add_argument("--latency", type=float, default=0.02)
    o.add_argument("--repeat", type=int, default=3)
    o.add_argument("--top", type=int, default=12, help="modules shown in the import table")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.command == "cycle":
        print(
            "| agents | cycle | wall | CPU | requests | bytes | state writes | peak RSS | "
            "sequential loop | speed-up |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for n in args.agents:
            for row in asyncio.run(bench_cycle(n, args.latency, args.concurrency, args.repeat)):
                print(row, flush=True)
    elif args.command == "steady":
        print("| agents | polling | requests |")
        print("|---|---|---|")
        for row in asyncio.run(bench_steady(args.agents, args.minutes)):
            print(row)
    elif args.command == "budget":
        rows = asyncio.run(
            bench_budget(
                args.agents, args.minutes, args.drain, args.tick, args.start_every, args.seed,
                args.only,
            )
        )  # fmt: skip
        print("\n".join(rows))
    elif args.command == "once":
        print("\n".join(bench_once(args.agents, args.latency, args.repeat, args.top)))
    else:
        print("| agents | poll interval | alerts | p50 | p99 | |")
        print("|---|---|---|---|---|---|")
        for row in asyncio.run(bench_latency(args.agents, args.seconds, args.interval)):
            print(row)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
