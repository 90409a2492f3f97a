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
    commit     the run changes and the events they cause, in one transaction; then the
               retries that are due are asked of the platform

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime

import structlog

from watcher.cycle import WILDCARD, Cycle, Memory, OnEvents, PollReport, Route, spent
from watcher.cycle_discovery import DiscoveryStage
from watcher.cycle_listing import ListingStage
from watcher.cycle_rules import RulesStage
from watcher.diff import Change
from watcher.errors import SourceError, SourceUnavailable
from watcher.fleet import Fleet
from watcher.judge import Judge
from watcher.models import Event, EventType, RunState, source_event, with_data
from watcher.outages import health_change, note_failing
from watcher.redact import redact
from watcher.retrying import Retrier
from watcher.rules import RuleBook
from watcher.sources.base import Source
from watcher.standing import Standing, standings
from watcher.store import AgentRecord, SourceHealth, SourceMarks, Store

log = structlog.get_logger("watcher.poller")

MARKS_EVERY = 60.0
"""Seconds a poll that writes nothing else may leave the saved marks (last success, sweep
place, budget window) behind."""

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
            fleet=Fleet(store.load_agents(source.name), wildcard=source.config.agents == ["*"]),
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
        self.judge = judge
        self.route = route
        self._saved = marks
        """The marks as last written."""
        self.listing = ListingStage(source, memory, write_ahead=self._write_ahead)
        retrier = Retrier(source, store, book)
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
        if not self._commit(cycle):
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

    # --- stages -----------------------------------------------------------------------------------

    def _commit(self, cycle: Cycle) -> bool:
        """Write the cycle; then take it into the memory. False if the write failed (logged;
        the cycle is not ok)."""
        report = cycle.report
        self._close_baseline(cycle)
        after = self._annotate(cycle)
        health = self._health_change(report.errors, cycle.now, cycle.events)
        marks = self._marks_to_write(cycle, health)
        try:
            fresh = self.store.commit(
                source=self.name,
                changes=cycle.changes,
                agents=list(cycle.records.values()),
                events=cycle.events,
                health=health,
                listings=self.source.fingerprints.pending(cycle.listed),
                marks=marks,
                retries=cycle.retries,
                targets={event.id: self.route(event) for event in cycle.events},
                now=cycle.now,
                now_ts=cycle.ts,
            )
        except Exception as err:  # disk full, read-only file system, corrupt file
            self._write_failed(err)
            report.ok = False
            return False
        self._apply(cycle.changes, cycle.listed, cycle.ts, health)
        self.memory.standings = after
        if marks is not None:
            self._saved = marks
        if not report.errors:
            self.memory.last_success = cycle.now
        report.events = fresh
        return True

    def _close_baseline(self, cycle: Cycle) -> None:
        """The rest of a quiet baseline goes now; the agents listed carry their hint; a first
        poll says what it baselined."""
        cycle.baselined.extend(cycle.quiet.agents)
        cycle.changes.extend(cycle.quiet.changes)
        self._listed(cycle)
        if cycle.first:
            self._announce_baseline(cycle)

    def _listed(self, cycle: Cycle) -> None:
        """Agents whose runs were listed now carry the hint they were listed under."""
        fleet = self.memory.fleet
        for agent_id in cycle.listed:
            record = fleet.listed(agent_id, cycle.ts)
            if record is not None:
                cycle.records[agent_id] = record
        for agent in cycle.baselined:
            if agent.id not in cycle.records and agent.id not in fleet.members:
                cycle.records[agent.id] = AgentRecord(agent.id, agent.name)

    def _announce_baseline(self, cycle: Cycle) -> None:
        cycle.new_agents.update(a.id for a in cycle.baselined)
        cycle.new_agents.update(self.memory.fleet.members)
        cycle.new_agents.discard(WILDCARD)
        agents = len(cycle.new_agents)
        if not agents:
            return
        new_ids = {a.id for a in cycle.baselined}
        runs = cycle.quiet.written_runs + sum(
            1 for c in cycle.changes if c.snapshot.agent_id in new_ids
        )
        cycle.events.insert(
            0,
            source_event(
                EventType.SOURCE_BASELINED,
                source=self.name,
                source_kind=self.source.kind,
                ts=cycle.now,
                message=f"watching {agents} agent(s); their history before now is recorded, "
                "not alerted",
                agents=agents,
                runs=runs,
            ),
        )

    def _annotate(self, cycle: Cycle) -> dict[str, Standing]:
        """Give each finish where its agent stands: the outcome before it (for "recovered"
        alerts), the failures in a row and since when, the last success. Returns the
        standings after the cycle (kept once it commits)."""
        after = {agent_id: s.copy() for agent_id, s in self.memory.standings.items()}
        new_ids = {a.id for a in cycle.baselined}
        _fold(after, (c for c in cycle.changes if c.snapshot.agent_id in new_ids))
        for index, event in enumerate(cycle.events):
            outcome = event.outcome
            if event.type == EventType.RUN_FINISHED and event.agent_id and outcome:
                standing = after.setdefault(event.agent_id, Standing())
                previous = standing.last_outcome
                if self.judge.was_stuck(event.agent_id, event.run_id or "", event.attempt):
                    event = with_data(event, was_stuck=True)
                records = event.counts.records if event.counts else None
                standing.finished(outcome.value, event.ended_at, event.duration_s, records)
                cycle.events[index] = with_data(
                    event, agent_previous_outcome=previous, **standing.fields()
                )
        return after

    def _health_change(
        self, errors: list[SourceError], now: datetime, events: list[Event]
    ) -> SourceHealth | None:
        """The new health to store, if it changed, adding the event that says so; run events
        of a failing source say that it fails (`watcher.outages`)."""
        health, said = health_change(
            self.memory.health,
            errors,
            now,
            source=self.name,
            kind=self.source.kind,
            after=self.source.config.source_failed_after,
        )
        note_failing(events, health or self.memory.health)
        events.extend(said)
        return health

    def _write_ahead(self, cycle: Cycle) -> bool:
        """Write the agents of a quiet baseline collected so far, ahead of the poll's commit:
        they emit nothing, so no event waits on them, and a baseline of 10,000 agents is not
        held in memory whole. False if the write failed (logged; the poll is abandoned)."""
        quiet = cycle.quiet
        ids = {a.id for a in quiet.agents}
        fleet = self.memory.fleet
        records = [fleet.listed(a.id, cycle.ts) or AgentRecord(a.id, a.name) for a in quiet.agents]
        try:
            self.store.commit(
                source=self.name,
                changes=quiet.changes,
                agents=records,
                listings=self.source.fingerprints.pending(ids),
                now=cycle.now,
                now_ts=cycle.ts,
            )
        except Exception as err:
            self._write_failed(err)
            return False
        self._apply(quiet.changes, ids, cycle.ts, None)
        _fold(self.memory.standings, quiet.changes)
        cycle.listed = [a for a in cycle.listed if a not in ids]
        for agent_id in ids:
            cycle.records.pop(agent_id, None)  # written: the commit must not write it back
        cycle.new_agents.update(ids)
        quiet.written()
        return True

    def _write_failed(self, err: Exception) -> None:
        log.error(
            "state write failed; the poll will be diffed again",
            source=self.name,
            error=redact(f"{type(err).__name__}: {err}"),
        )

    def _apply(
        self,
        changes: Iterable[Change],
        listed: Iterable[str],
        ts: float,
        health: SourceHealth | None,
    ) -> None:
        """Take what was written into the memory."""
        runs = self.memory.runs
        for agent_id in listed:
            runs.setdefault(agent_id, {})
        for change in changes:
            snap = change.snapshot
            runs.setdefault(snap.agent_id, {})[snap.run_id] = change.state
        self.source.fingerprints.confirm(listed)
        if health is not None:
            self.memory.health = health  # its event, or `outages`, said so in the log

    def _marks(self, success: datetime | None) -> SourceMarks:
        return SourceMarks(success, self.memory.cursor, tuple(self.source.budget.window()))

    def _marks_to_write(self, cycle: Cycle, health: SourceHealth | None) -> SourceMarks | None:
        """The marks to write with the cycle: a quiet poll writes nothing, but the marks go at
        least once every `MARKS_EVERY`."""
        success = None if cycle.report.errors else cycle.now
        writes = bool(cycle.changes or cycle.records or cycle.events or health)
        marks = self._marks(success or self.memory.last_success)
        if not writes and not self._marks_due(cycle.now):
            return None
        return marks

    def _marks_due(self, now: datetime) -> bool:
        saved = self._saved.last_success
        return saved is None or (now - saved).total_seconds() >= MARKS_EVERY

    # --- housekeeping ---------------------------------------------------------------------------

    def save_marks(self) -> None:
        """Write the last success, the sweep's place and the budget's window (at shutdown)."""
        marks = self._marks(self.memory.last_success)
        if marks == self._saved:
            return
        now = self.clock()
        self.store.commit(source=self.name, marks=marks, now=now, now_ts=now.timestamp())
        self._saved = marks

    def prune(self) -> int:
        """Forget runs that can no longer appear in a listing (see `Store.prune_runs`)."""
        keep = max(200, 4 * self.source.history_depth)
        removed = self.store.prune_runs(self.name, keep)
        if removed:
            self.memory.runs = self.store.load_runs(self.name)
        return removed


def _fold(into: dict[str, Standing], changes: Iterable[Change]) -> None:
    """Take the finishes a baseline records quietly (changes run oldest first) into the
    agents' standings: what a later "recovered" or a streak counts from."""
    for change in changes:
        snap = change.snapshot
        if snap.outcome is not None:
            into.setdefault(snap.agent_id, Standing()).finished(
                snap.outcome.value, snap.ended_at, snap.duration_s, snap.counts.records
            )
