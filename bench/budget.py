"""`bench.py budget`: watcher against a Sequentum Cloud that allows 100 requests a minute per
key, over simulated time.

The world: N agents (default 1,000) with 20 finished runs each and 5% of them with a run in
progress; the simulator's autopilot starts a run on every agent about every `start_every`
seconds (staggered, ±20%, never while one is in progress). Runs take the simulator's random
paths — success, failure (archived to Failed six ticks later), stopped, a flash run that starts
and finishes between two polls, skipped — with each stage lasting a tick (`tick` seconds;
running 1–3 ticks), so that about 5% of the agents have a run in progress at any moment and a
few runs finish every minute. The world runs `WARM_UP_TICKS` ticks before watcher starts.

Simulated time: watcher (`App(clock=…)`, `HttpClient(wall=…, sleep=…)`) and the simulator
(`World(now=…)`) read one fake clock, which only the harness moves. The harness calls
`app.poll()` once per `poll_interval_active` of simulated time, as the daemon's scheduler does
(a poll that overran its tick skips the ticks it covered: the scheduler coalesces them), and
delivers what it recorded (`upkeep.settle`) to an outbox sink. A wait inside watcher (for the
budget, a Retry-After, a backoff) moves the clock on by its length: the simulated platform
answers without latency, so nothing else happens meanwhile. After `minutes`, the autopilot
starts no more runs and polling goes on until every run has finished and been recorded, or
for `drain` minutes at most. Expected finishes: every run that finished after watcher started
(a Failure archived to Failed is the same finish).

Measured per variant, in simulated time: requests a minute over the first `minutes` (and the
most in any 60 s, as the platform counts), 429s, detection latency from a status change in the
simulator to the event recorded, finishes recorded and delivered vs expected, how long the
sweep takes to list every agent, and the first start.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

import watcher.cycle_listing
from watcher.app import App
from watcher.config import Settings, SourceConfig, WatcherSection
from watcher.events import Event, EventType
from watcher.planner import Plan
from watcher.sinks.base import Done, Sink
from watcher.sources.http import HttpClient
from watcher.upkeep import settle
from watcher_sim import World, serve
from watcher_sim.statuses import CLOUD_ACTIVE, CLOUD_FINISHED, CloudStatus

START = datetime(2026, 11, 23, 12, tzinfo=UTC)
WARM_UP_TICKS = 12
"""The world runs this many ticks before watcher starts: the longest path (a failure, then its
archiving) takes 11, so by the start runs are in progress and finishing at their steady rate."""
FAILURE, FAILED = int(CloudStatus.FAILURE), int(CloudStatus.FAILED)


@dataclass(frozen=True)
class Variant:
    label: str
    hints: bool = True
    """Does the simulated platform give change hints (`status`, `lastActivity`)?"""
    source: dict[str, Any] = field(default_factory=dict)
    """Source settings beyond the defaults."""


VARIANTS = (
    Variant("hints + budget (defaults)"),
    Variant(
        "fixed polling (`use_hints = false`, `requests_per_minute = 0`)",
        source={"use_hints": False, "requests_per_minute": 0},
    ),
    Variant("defaults, platform without hints", hints=False),
)


# --- simulated time --------------------------------------------------------------------------


class SimTime:
    """The one clock of a variant: watcher's clock and wall, and the world's now. Moving it
    applies the world's transitions due by then."""

    def __init__(self, start: datetime) -> None:
        self.t = start
        self.step: Any = None

    def __call__(self) -> datetime:
        return self.t

    def wall(self) -> float:
        return self.t.timestamp()

    def advance_to(self, when: datetime) -> None:
        self.t = max(self.t, when)
        if self.step is not None:
            self.step()

    async def sleep(self, delay: float) -> None:
        """watcher's sleep: the clock moves on by `delay`."""
        self.advance_to(self.t + timedelta(seconds=max(0.0, delay)))
        await asyncio.sleep(0)


class BenchWorld(World):
    """A world that logs every status change and every request it is sent, and whose autopilot
    can be told to start no more runs."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.transitions: list[tuple[datetime, int, int, int | None, int]] = []
        """(when, agent, run, status before, status after); a new run's "before" is None."""
        self._seen: set[int] = set()
        self.arrivals: list[tuple[datetime, bool]] = []
        """(when, refused with 429) of every authenticated request."""
        self.starting = True

    def _enter(self, run: Any, status: int, at: datetime, message: str | None = None) -> None:
        before = run.status if run.id in self._seen else None
        self._seen.add(run.id)
        self.transitions.append((at, run.configId, run.id, before, int(status)))
        super()._enter(run, status, at, message)

    def _autostart(self, job: Any, at: datetime) -> None:
        if self.starting:
            super()._autostart(job, at)

    def admit(self, credential: str) -> int | None:
        wait = super().admit(credential)
        self.arrivals.append((self.now(), wait is not None))
        return wait

    def active_agents(self) -> int:
        runs = self._runs.values()
        return sum(1 for by_id in runs if any(r.status in CLOUD_ACTIVE for r in by_id.values()))


class Recorder(Sink):
    """An outbox sink, as an alert channel is: when each `run.finished` was delivered."""

    name = "bench"

    def __init__(self, clock: SimTime) -> None:
        self.clock = clock
        self.finished: list[tuple[datetime, Event]] = []

    def accepts(self, event: Event) -> bool:
        return event.type == EventType.RUN_FINISHED

    async def deliver(self, events: Sequence[Event], done: Done) -> None:
        self.finished.extend((self.clock(), event) for event in events)


# --- one variant -----------------------------------------------------------------------------


@dataclass
class Run:
    """What one variant left behind, for `Result.of`."""

    world: BenchWorld
    end: datetime
    last: datetime
    polls: int = 0
    overruns: int = 0
    recorded: list[tuple[datetime, Event]] = field(default_factory=list)
    delivered: list[tuple[datetime, Event]] = field(default_factory=list)
    listed: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    swept: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    active: list[int] = field(default_factory=list)
    first_poll: tuple[int, int] = (0, 0)
    known: set[str] = field(default_factory=set)
    """Runs in watcher's state at the end."""
    purposes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    deferred: int = 0


def settings_for(tmp: Path, url: str, key: str, **source: Any) -> Settings:
    fields: dict[str, Any] = {
        "name": "cloud",
        "kind": "sequentum_cloud",
        "base_url": url,
        "api_key": key,
    }
    fields.update(source)
    return Settings(
        watcher=WatcherSection(
            state_path=tmp / "state.db",
            events_path=tmp / "events.jsonl",
            log_format="json",
            log_level="error",
        ),
        sources=[SourceConfig(**fields)],
    )


async def run_variant(
    variant: Variant,
    *,
    agents: int,
    minutes: float,
    drain: float,
    tick: float,
    start_every: float,
    seed: int,
) -> Run:
    clock = SimTime(START - timedelta(seconds=WARM_UP_TICKS * tick))
    world = BenchWorld.bulk(
        agents,
        active_fraction=0.05,
        seed=seed,
        now=clock,
        tick=tick,
        start_every=start_every,
        rate_limit=100,
        hints=variant.hints,
    )
    clock.step = world.step
    clock.advance_to(START)  # runs start and finish as they will from now on
    world.transitions.clear()  # the history before watcher starts
    end = START + timedelta(minutes=minutes)
    run = Run(world, end, end)
    planned: list[list[tuple[str, str]]] = []
    original_plan = watcher.cycle_listing.plan

    def recording_plan(*args: Any, **kw: Any) -> Plan:
        chosen = original_plan(*args, **kw)
        planned.append([(a.id, str(reason)) for a, reason in chosen.listings])
        return chosen

    watcher.cycle_listing.plan = recording_plan  # which agents each poll planned, and why
    runner, url = await serve(world)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = settings_for(Path(tmp), url, sorted(world.api_keys)[0], **variant.source)
            recorder = Recorder(clock)
            async with aiohttp.ClientSession() as session:
                http = HttpClient(session, sleep=clock.sleep, wall=clock.wall, rand=lambda: 0.5)
                async with App(settings, clock=clock, http=http, extra_sinks=[recorder]) as app:
                    await _drive(app, run, clock, planned, drain)
            run.delivered = recorder.finished
    finally:
        watcher.cycle_listing.plan = original_plan
        await runner.cleanup()
    return run


async def _drive(
    app: App, run: Run, clock: SimTime, planned: list[list[tuple[str, str]]], drain: float
) -> None:
    world = run.world
    poller = app.pollers[0]
    forward = poller.on_events

    def on_events(events: list[Event]) -> None:
        run.recorded.extend((clock(), e) for e in events)
        if forward is not None:
            forward(events)

    poller.on_events = on_events
    interval = timedelta(seconds=poller.source.config.poll_interval_active)
    deadline = run.end + timedelta(minutes=drain)
    tick = START
    while tick < deadline:
        if clock() > tick:  # the last poll overran its tick: skip the ticks it covered
            run.overruns += 1
            tick += interval * ((clock() - tick) // interval + 1)
        clock.advance_to(tick)
        if world.starting and clock() >= run.end:
            world.starting = False
            run.purposes = Counter(poller.source.requests)
        planned.clear()
        polled_at = clock.wall()
        sent = len(world.arrivals)
        refused = sum(1 for _, no in world.arrivals if no)
        report = await app.poll(poller)
        await settle(app, 30)
        run.polls += 1
        if run.polls == 1:
            run.first_poll = (
                len(world.arrivals) - sent,
                sum(1 for _, no in world.arrivals if no) - refused,
            )
        if clock() < run.end:
            run.active.append(world.active_agents())
            run.reasons.update({str(why): n for why, n in report.planned.items()})
            run.deferred += sum(report.deferred.values())
        members = poller.fleet.members
        for chosen in planned:
            for agent_id, reason in chosen:
                member = members.get(agent_id)
                if member is None or member.listed_at != polled_at:
                    continue  # refused (429) or failed: not listed
                run.listed[agent_id].append(polled_at)
                if reason == "sweep":
                    run.swept[agent_id].append(polled_at)
        run.last = clock()
        run.known = {run_id for runs in poller.runs.values() for run_id in runs}
        if not world.starting and world.active_agents() == 0 and _all_recorded(run):
            break
        tick += interval


def expected_finishes(world: BenchWorld) -> dict[str, tuple[datetime, int]]:
    """Runs that finished after watcher started: when, and with which status."""
    out: dict[str, tuple[datetime, int]] = {}
    for at, _, run_id, previous, status in world.transitions:
        if status in CLOUD_FINISHED and not (status == FAILED and previous == FAILURE):
            out.setdefault(str(run_id), (at, status))
    return out


def _all_recorded(run: Run) -> bool:
    got = {e.run_id for _, e in run.recorded if e.type == EventType.RUN_FINISHED}
    return set(expected_finishes(run.world)) <= got


# --- figures ---------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    minutes: float
    agents: int
    polls: int
    overruns: int
    drained: float
    """Minutes of simulated time until the last poll."""
    requests: int
    refused: int
    max_window: int
    purposes: Counter[str]
    reasons: Counter[str]
    deferred: int
    finish_latency: list[float]
    change_latency: list[float]
    """Status changes other than a finish and a run's creation (a Failure archived too)."""
    new_latency: list[float]
    """A run's creation."""
    expected: int
    recorded: int
    missed: int
    quiet: int
    """Of the missed: in watcher's state at the end, recorded as history without an event."""
    duplicates: int
    unexpected: int
    delivered: int
    delivered_twice: int
    failures: int
    diagnosed: int
    changes_per_minute: float
    finishes_per_minute: float
    active_share: float
    swept_all: float | None
    swept_agents: int
    listed_all: float | None
    max_gap: float
    first_poll: tuple[int, int]
    first_failure: tuple[float, float | None, float | None, int]
    """When the world's first failure after the start happened, when it was recorded, when
    the first failure alert of all was recorded, and requests sent by then (seconds from the
    start; None: never)."""

    @classmethod
    def of(cls, label: str, run: Run, minutes: float) -> Result:
        world, end = run.world, run.end
        start_ts, end_ts = START.timestamp(), end.timestamp()
        window = [no for at, no in world.arrivals if at < end]
        expected = expected_finishes(world)
        finishes: dict[str, list[datetime]] = defaultdict(list)
        by_run: dict[str, list[datetime]] = defaultdict(list)
        failures = diagnosed = 0
        for at, event in run.recorded:
            if not event.run_id:
                continue
            by_run[event.run_id].append(at)
            if event.type == EventType.RUN_FINISHED:
                finishes[event.run_id].append(at)
                if event.outcome is not None and event.outcome.value == "failure":
                    failures += 1
                    diagnosed += "diagnostics" in dict(event.data)
        latency = [
            (min(finishes[run_id]) - at).total_seconds()
            for run_id, (at, _) in expected.items()
            if run_id in finishes
        ]
        changes = [t for t in world.transitions if t[0] < end]
        change_latency, new_latency = [], []
        for at, _, run_id, before, status in changes:
            if expected.get(str(run_id)) == (at, status):
                continue  # a finish
            later = [t for t in by_run.get(str(run_id), ()) if t >= at]
            if later:
                kind = new_latency if before is None else change_latency
                kind.append((min(later) - at).total_seconds())
        delivered = Counter(e.run_id for _, e in run.delivered)
        agents = [str(a) for a in world.agents]
        gaps = []
        for agent_id in agents:
            seen = [t for t in run.listed.get(agent_id, []) if t < end_ts]
            gaps.append(max(b - a for a, b in itertools.pairwise([start_ts, *seen, end_ts])))
        return cls(
            label=label,
            minutes=minutes,
            agents=len(agents),
            polls=run.polls,
            overruns=run.overruns,
            drained=(run.last - START).total_seconds() / 60,
            requests=len(window),
            refused=sum(window),
            max_window=_max_in_window([at.timestamp() for at, _ in world.arrivals]),
            purposes=run.purposes,
            reasons=run.reasons,
            deferred=run.deferred,
            finish_latency=latency,
            change_latency=change_latency,
            new_latency=new_latency,
            expected=len(expected),
            recorded=sum(1 for r in expected if r in finishes),
            missed=sum(1 for r in expected if r not in finishes),
            quiet=sum(1 for r in expected if r not in finishes and r in run.known),
            duplicates=sum(1 for r in expected if len(finishes.get(r, ())) > 1),
            unexpected=sum(1 for r in finishes if r not in expected),
            delivered=sum(1 for r in expected if delivered[r]),
            delivered_twice=sum(1 for n in delivered.values() if n > 1),
            failures=failures,
            diagnosed=diagnosed,
            changes_per_minute=len(changes) / minutes,
            finishes_per_minute=sum(1 for at, _ in expected.values() if at < end) / minutes,
            active_share=statistics.mean(run.active or [0]) / len(agents),
            swept_all=_full_round(run.swept, agents, start_ts),
            swept_agents=sum(1 for a in agents if any(t < end_ts for t in run.swept.get(a, ()))),
            listed_all=_full_round(run.listed, agents, start_ts),
            max_gap=max(gaps),
            first_poll=run.first_poll,
            first_failure=_first_failure(run, expected),
        )


def _first_failure(
    run: Run, expected: dict[str, tuple[datetime, int]]
) -> tuple[float, float | None, float | None, int]:
    """See `Result.first_failure`."""
    first, (happened, _) = min(
        ((r, v) for r, v in expected.items() if v[1] == FAILURE), key=lambda rv: rv[1][0]
    )
    alerts = [
        (at, event.run_id)
        for at, event in run.recorded
        if event.type == EventType.RUN_FINISHED
        and event.outcome is not None
        and event.outcome.value == "failure"
    ]
    that = next((at for at, run_id in alerts if run_id == first), None)
    any_ = alerts[0][0] if alerts else None
    sent = sum(1 for t, _ in run.world.arrivals if any_ is not None and t <= any_)
    return (
        (happened - START).total_seconds(),
        None if that is None else (that - START).total_seconds(),
        None if any_ is None else (any_ - START).total_seconds(),
        sent,
    )


def _full_round(times: dict[str, list[float]], agents: list[str], start: float) -> float | None:
    """Seconds from the start until every agent was listed at least once (None: never)."""
    firsts = [min(times[a]) for a in agents if times.get(a)]
    return max(firsts) - start if len(firsts) == len(agents) else None


def _max_in_window(stamps: list[float], window: float = 60.0) -> int:
    best = lo = 0
    stamps = sorted(stamps)
    for hi, t in enumerate(stamps):
        while stamps[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (NaN of nothing)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


# --- tables ----------------------------------------------------------------------------------


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds != seconds:  # NaN
        return "—"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def tables(results: list[Result], minutes: float, drain: float) -> list[str]:
    first = results[0]
    lines = [
        f"world: {first.agents:,} agents, {first.active_share:.1%} with a run in progress on "
        f"average, {first.changes_per_minute:.1f} status changes and "
        f"{first.finishes_per_minute:.1f} finishes a minute; {minutes:g} min of simulated time, "
        f"then up to {drain:g} min for the runs in progress to finish",
        "",
        "#### Requests",
        "",
        f"| variant | requests/min (first {minutes:g} min) | most in any 60 s | 429s | "
        "by purpose (per min) | polls (overran) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        per = ", ".join(
            f"{k} {v / r.minutes:.1f}" for k, v in sorted(r.purposes.items(), key=lambda kv: -kv[1])
        )
        lines.append(
            f"| {r.label} | {r.requests / r.minutes:,.1f} | {r.max_window:,} | "
            f"{r.refused:,} ({r.refused / r.minutes:,.0f}/min) | {per} | {r.polls} ({r.overruns}) |"
        )
    lines += [
        "",
        "#### Detection latency (status change in the simulator → event recorded)",
        "",
        "| variant | what | changes | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for what, values in (
            ("finishes", r.finish_latency),
            ("other status changes", r.change_latency),
            ("new runs", r.new_latency),
        ):
            lines.append(
                f"| {r.label} | {what} | {len(values)} | {_s(percentile(values, 0.5))} | "
                f"{_s(percentile(values, 0.95))} | {_s(percentile(values, 0.99))} | "
                f"{_s(max(values, default=None))} |"
            )
    lines += [
        "",
        "#### Finishes",
        "",
        "| variant | expected | recorded | missed (of them, recorded as history) | duplicates | "
        "unexpected | delivered (outbox) | failures with diagnostics |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.label} | {r.expected} | {r.recorded} | {r.missed} ({r.quiet}) | "
            f"{r.duplicates} | {r.unexpected} | {r.delivered} ({r.delivered_twice} twice) | "
            f"{r.diagnosed} of {r.failures} |"
        )
    lines += [
        "",
        "#### Sweep",
        "",
        f"| variant | every agent listed by the sweep | agents swept in {minutes:g} min | "
        "every agent listed (any reason) | longest an agent went unlisted | listings planned/min: "
        "changed, active, sweep | deferred for budget/min |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        reasons = ", ".join(
            f"{r.reasons.get(k, 0) / r.minutes:.1f}" for k in ("changed", "active", "sweep")
        )
        lines.append(
            f"| {r.label} | {_after(r.swept_all, r)} | {r.swept_agents:,} of {r.agents:,} | "
            f"{_after(r.listed_all, r)} | {_s(r.max_gap)} | {reasons} | "
            f"{r.deferred / r.minutes:,.0f} |"
        )
    lines += [
        "",
        "#### First start",
        "",
        f"| variant | first poll: requests (429s) | the first failure (at "
        f"+{_s(first.first_failure[0])}) recorded | first failure alert | requests sent by then |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        _, that, any_, sent = r.first_failure
        lines.append(
            f"| {r.label} | {r.first_poll[0]:,} ({r.first_poll[1]:,}) | {_at(that)} | "
            f"{_at(any_)} | {sent:,} |"
        )
    lines.append(
        f"| naive (one request per agent) | {first.agents:,} ({first.agents / 100:.0f} min "
        "at 100/min) | | | |"
    )
    return lines


def _at(seconds: float | None) -> str:
    return "never" if seconds is None else f"+{_s(seconds)}"


def _after(seconds: float | None, r: Result) -> str:
    return _s(seconds) if seconds is not None else f"not within {_s(r.drained * 60)}"


async def bench_budget(
    agents: int,
    minutes: float,
    drain: float,
    tick: float,
    start_every: float,
    seed: int,
    only: list[int] | None = None,
) -> list[str]:
    results = []
    for index, variant in enumerate(VARIANTS):
        if only and index + 1 not in only:
            continue
        run = await run_variant(
            variant,
            agents=agents,
            minutes=minutes,
            drain=drain,
            tick=tick,
            start_every=start_every,
            seed=seed,
        )
        results.append(Result.of(variant.label, run, minutes))
    return tables(results, minutes, drain)
