"""`bench.py once`: `watcher once` as a whole process — interpreter start-up, imports, config,
state file, one poll of every source, delivery — against `bench/simserver.py` in another
process that never says no (`--rate-limit 0`), with 20 ms of latency per request.

Each variant runs on fresh state: a first start (the baseline), then a second `watcher once`
right after it. The sequential loop (`common.naive_cycle`: one `requests` call per agent) runs
against the same server in the same run. Requests are counted by the server.

`python -X importtime` on one more first start gives the import cost, by module.

watcher's own modules are compiled to bytecode first, as `pip install` and the container image
do: with an editable install under PYTHONDONTWRITEBYTECODE every start would compile them again
(about 0.1 s), a cost no installed watcher pays.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common import HERE, SimProcess, cpu, naive_cycle, sim_process

VARIANTS: tuple[tuple[str, dict[str, object]], ...] = (
    ("default config (requests_per_minute 90)", {}),
    ("requests_per_minute = 0", {"requests_per_minute": 0}),
)


@dataclass
class Once:
    wall: float
    cpu: float
    requests: int
    code: int


def write_config(tmp: Path, url: str, key: str, source: dict[str, object]) -> Path:
    """A config file with nothing but what must be said, plus `source` keys."""
    extra = "".join(f"{name} = {_toml(value)}\n" for name, value in source.items())
    path = tmp / "watcher.toml"
    path.write_text(
        f'[watcher]\nstate_path = "{tmp / "state.db"}"\nevents_path = "{tmp / "events.jsonl"}"\n'
        'log_format = "json"\nlog_level = "warning"\n\n'
        f'[[sources]]\nname = "cloud"\nkind = "sequentum_cloud"\nbase_url = "{url}"\n'
        f'api_key = "{key}"\n{extra}'
    )
    return path


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower()


def watcher_once(config: Path, sim: SimProcess, *flags: str) -> tuple[Once, str]:
    """Run `python [flags] -m watcher once -c config`; its figures and its stderr."""
    before_requests, _ = sim.stats()
    before_cpu = cpu(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-m", "watcher", "once", "-c", str(config)],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    after_requests, _ = sim.stats()
    once = Once(
        wall, cpu(resource.RUSAGE_CHILDREN) - before_cpu, after_requests - before_requests,
        done.returncode,
    )  # fmt: skip
    return once, done.stderr


def import_times(stderr: str) -> list[tuple[str, int, int]]:
    """(module with its nesting shown by indentation, self µs, cumulative µs) from `-X
    importtime` output."""
    out = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = line[len("import time:") :].split("|")
        out.append((name.rstrip(), int(own), int(total)))
    return out


def bench_once(agents: int, latency: float, repeat: int, top: int) -> list[str]:
    results: dict[str, list[tuple[Once, Once]]] = {label: [] for label, _ in VARIANTS}
    package = HERE.parent / "watcher"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    with sim_process(agents, latency, rate_limit=0) as sim:
        ids = [str(10_000 + i) for i in range(agents)]  # bench/simserver.py's agents
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp) / "naive.json"
            naive_cycle(sim.url, sim.key, ids[:10], state)  # warm up the connection
            naive = naive_cycle(sim.url, sim.key, ids, state)
        for _ in range(repeat):
            for label, source in VARIANTS:
                with tempfile.TemporaryDirectory() as tmp:
                    config = write_config(Path(tmp), sim.url, sim.key, source)
                    first, _ = watcher_once(config, sim)
                    second, _ = watcher_once(config, sim)
                    results[label].append((first, second))
        with tempfile.TemporaryDirectory() as tmp:
            config = write_config(Path(tmp), sim.url, sim.key, {})
            _, stderr = watcher_once(config, sim, "-X", "importtime")
    rows = [
        f"sequential loop: {naive:.1f} s for {agents:,} requests",
        "",
        "| config | `watcher once` | wall | CPU | requests | exit | sequential loop | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, runs in results.items():
        for i, which in enumerate(("first start", "second, right after")):
            onces = [run[i] for run in runs]
            wall = statistics.median(o.wall for o in onces)
            spread = f" ({min(o.wall for o in onces):.2f}–{max(o.wall for o in onces):.2f})"
            rows.append(
                f"| {label} | {which} | {wall:.2f} s{spread if repeat > 1 else ''} | "
                f"{statistics.median(o.cpu for o in onces):.2f} s | "
                f"{_same(o.requests for o in onces)} | {_same(o.code for o in onces)} | "
                f"{naive:.1f} s | {naive / wall:.1f}x |"
            )
    rows += ["", *import_table(import_times(stderr), top)]
    return rows


def _same(values: Sequence[int] | object) -> str:
    """One value, or the range when the runs differ."""
    seen = sorted(set(values))  # type: ignore[call-overload]
    return f"{seen[0]:,}" if len(seen) == 1 else f"{seen[0]:,}–{seen[-1]:,}"


def import_table(times: list[tuple[str, int, int]], top: int) -> list[str]:
    """The whole import cost, then the `top` modules by cumulative time among those imported
    directly by watcher's own modules or at the top level."""
    total = sum(own for _, own, _ in times)
    rows = [
        f"imports: {total / 1e6:.2f} s in all, {len(times)} modules",
        "",
        "| module | cumulative | self |",
        "|---|---|---|",
    ]
    shallow = [(n, own, cum) for n, own, cum in times if len(n) - len(n.lstrip()) <= 5]
    for name, own, cum in sorted(shallow, key=lambda t: -t[2])[:top]:
        rows.append(f"| `{name.strip()}` | {cum / 1000:.0f} ms | {own / 1000:.0f} ms |")
    return rows
