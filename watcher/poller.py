"""Polls one source: a cycle of small stages, each spending from the source's request budget.

    discover   the platform's change hints (Sequentum Cloud's agent listing, most recently
               active first, read only as far as it changed) or, without hints, its agents
               (`cycle_discovery`)
    list       the runs of the agents the planner picks: changed first (`cycle_listing`)
    enrich     diagnostics, failed steps, run details of the new finishes, as budget allows
    list       the runs of the agents due for the safety-net sweep, and of the active ones,
               with what is left
    enrich     the same, for what the second round found
    rules      stuck runs, anomalies, missed schedules; the retries to schedule (`cycle_rules`)
    commit     the run changes and the events they cause, in one transaction (`cycle_commit`);
               then the retries that are due are asked of the platform

Every stage works on the same `Cycle` and reads the poller's `Memory` (`watcher.cycle`): what
it knows of the source between polls. Its runs, standings and health change only once a commit
wrote them, so a failed write is simply diffed again. The poller runs one cycle at a time, and
decides when the next may come.

When a source has been failing for its `source_failed_after` it emits `source.failed` once;
when it works again, `source.recovered` once (the failing state is stored, so a restart during
an outage does not alert again; see `watcher.outages`). A 429 is the platform's budget, not an
outage: the agent waits for the next cycle and the source does not count as failing. A source
that failed is tried again on the next tick, or later when it said Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from watcher.cycle import Cycle, Memory, OnEvents, PollReport, Route, spent
from watcher.cycle_commit import CommitStage
from watcher.cycle_discovery import DiscoveryStage
from watcher.cycle_listing import ListingStage
from watcher.cycle_rules import RulesStage
from watcher.errors import SourceError, SourceUnavailable
from watcher.fleet import Fleet
from watcher.judge import Judge
from watcher.retrying import Retrier
from watcher.rules import RuleBook
from watcher.runs import RunState
from watcher.sources.base import Source
from watcher.sourcestate import SourceHealth
from watcher.standing import Standing, standings
from watcher.store import Store

Clock = Callable[[], datetime]
Stage = Callable[[Cycle], Awaitable[None]]


class SourcePoller:
    def __init__(
        self,
        source: Source,
        store: Store,
        *,
        clock: Clock,
        route: Route = lambda event: [],
        on_events: OnEvents | None = None,
        rules: RuleBook | None = None,
        schedule_refresh: float = 600.0,
    ) -> None:
        self.source = source
        self.store = store
        self.clock = clock
        self.on_events = on_events
        marks = store.marks(source.name)
        self.memory = Memory(
            runs=store.load_runs(source.name),
            health=store.source_health(source.name),
            standings=standings(store.finishes(source.name)),
            fleet=Fleet(store.load_agents(source.name), wildcard=source.config.watches_all),
            last_success=marks.last_success,
            cursor=marks.cursor,
        )
        source.budget.restore(marks.budget)
        source.fingerprints.restore(store.listings(source.name))
        self._started = clock().timestamp()
        self._not_before = float("-inf")
        self._lock = asyncio.Lock()
        self._current: asyncio.Task[object] | None = None
        book = rules or RuleBook([])
        judge = Judge(
            source=source.name,
            kind=source.kind,
            book=book,
            store=store,
            run_url=source.run_url,
            schedule_refresh=schedule_refresh,
        )
        memory = self.memory
        self.discovery = DiscoveryStage(source, memory)
        self.commit = CommitStage(source, store, memory, judge=judge, route=route, saved=marks)
        self.listing = ListingStage(source, memory, write_ahead=self.commit.write_ahead)
        retrier = Retrier(source, store, book, clock=clock)
        self.rules = RulesStage(source, store, memory, judge=judge, retrier=retrier, route=route)
        self._stages: tuple[Stage, ...] = (
            self.discovery.discover,
            self.listing.first_round,
            self.listing.enrich,
            self.listing.second_round,
            self.listing.enrich,
            self.rules.apply,
        )

    @property
    def name(self) -> str:
        return self.source.name

    # --- what it knows (the status page, the metrics, readiness) -------------------------------

    @property
    def fleet(self) -> Fleet:
        return self.memory.fleet

    @property
    def runs(self) -> dict[str, dict[str, RunState]]:
        return self.memory.runs

    @property
    def health(self) -> SourceHealth:
        return self.memory.health

    @property
    def standings(self) -> dict[str, Standing]:
        return self.memory.standings

    @property
    def hinted(self) -> bool | None:
        """Does the platform give usable change hints? (None: not asked yet.)"""
        return self.memory.hinted

    @property
    def last_success(self) -> datetime | None:
        return self.memory.last_success

    @last_success.setter
    def last_success(self, value: datetime | None) -> None:
        """A poller that replaces one (a reload) goes on from its predecessor's success."""
        self.memory.last_success = value

    def sweep_age(self) -> float | None:
        """Seconds since the runs of the agent listed least recently were listed (an agent
        this process has not listed yet counts from its start); None without agents."""
        if not self.fleet:
            return None
        now = self.clock().timestamp()
        oldest = min((m.listed_at or self._started) for m in self.fleet.members.values())
        return max(0.0, now - oldest)

    # --- polls ----------------------------------------------------------------------------------

    async def poll(self, *, force: bool = False) -> PollReport:
        """One cycle. `force` makes every agent due (`watcher once`), within the budget."""
        async with self._lock:
            self._current = asyncio.current_task()
            try:
                return await self._poll(force)
            finally:
                self._current = None

    def cancel(self) -> None:
        """Abandon a poll in flight (shutdown). It has not committed: its commit is synchronous,
        so cancellation can only land while it waits on the platform."""
        if self._current is not None:
            self._current.cancel()

    async def idle(self) -> None:
        """Return once no poll of this source is in flight."""
        async with self._lock:
            return

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hold off polls while the body runs (housekeeping rewrites the run index)."""
        async with self._lock:
            yield

    async def _poll(self, force: bool) -> PollReport:
        now = self.clock()
        report = PollReport(self.name)
        if not force and now.timestamp() < self._not_before:
            report.skipped = True
            return report
        cycle = Cycle(now, force, report, first=not self.fleet, spent=spent(self.source))
        for stage in self._stages:
            await stage(cycle)
            if cycle.abandoned:
                report.ok = False
                return report
        if not self.commit.write(cycle):
            return report
        if report.errors:
            report.ok = False
            self._defer(cycle.ts, report.errors)
        if report.events and self.on_events:
            self.on_events(report.events)
        await self.rules.committed(cycle, self.on_events)
        return report

    def _defer(self, ts: float, errors: list[SourceError]) -> None:
        """After a failure, wait for the next tick — or as long as the platform asked."""
        waits = [
            e.retry_after
            for e in errors
            if isinstance(e, SourceUnavailable) and e.retry_after is not None
        ]
        wait = max([self.source.config.poll_interval_active, *waits])
        self._not_before = ts + wait - self.source.config.poll_interval_active / 2

    # --- housekeeping ---------------------------------------------------------------------------

    def save_marks(self) -> None:
        """Write the last success, the sweep's place and the budget's window (at shutdown)."""
        self.commit.save_marks(self.clock)

    def prune(self) -> int:
        """Forget runs that can no longer appear in a listing (see `Store.prune_runs`)."""
        keep = max(200, 4 * self.source.history_depth)
        removed = self.store.prune_runs(self.name, keep)
        if removed:
            self.memory.runs = self.store.load_runs(self.name)
        return removed
