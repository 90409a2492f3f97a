"""Polls one source: a cycle of small stages, each spending from the source's request budget.

    discover   the platform's change hints (Sequentum Cloud's agent listing, most recently
               active first, read only as far as it changed) or, without hints, its agents
    list       the runs of the agents the planner picks: changed, then active (`planner`)
    enrich     diagnostics, failed steps, run details of the new finishes, as budget allows
    sweep      the runs of the agents due for the safety-net sweep, with what is left
    enrich     the same, for what the sweep found
    commit     the run changes and the events they cause, in one transaction

Each listing is diffed as it arrives and dropped: only what changed is kept. The in-memory
state is updated only after the commit succeeded, so a failed write is simply diffed again.
Agents seen for the first time that emit nothing (a baseline) may be written ahead in chunks
of `BASELINE_CHUNK` runs, so a first start with 10,000 agents is not held in memory whole.

An agent whose listing failed changes nothing. When a source has been failing for its
`source_failed_after` it emits `source.failed` once; when it works again, `source.recovered`
once (the failing state is stored, so a restart during an outage does not alert again; see
`watcher.outages`). A 429 is the platform's budget,
not an outage: the agent waits for the next cycle and the source does not count as failing.
A source that failed is tried again on the next tick, or later when it said Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from watcher.diff import Change, diff_agent
from watcher.errors import (
    BudgetSpent,
    SourceError,
    SourceProtocolError,
    SourceThrottled,
    SourceUnavailable,
)
from watcher.events import Event, EventType, source_event, with_data
from watcher.fleet import Fleet
from watcher.judge import AgentView, Judge
from watcher.outages import health_change, note_failing
from watcher.planner import HINTED, SWEPT, Cadence, Reason, plan
from watcher.redact import redact
from watcher.retrying import Retrier
from watcher.rules import RuleBook
from watcher.rulestore import RetryRow
from watcher.runs import Agent
from watcher.runstore import AgentRecord
from watcher.sources.base import Source, purpose
from watcher.sources.http import UNCHANGED, Unchanged
from watcher.sourcestate import SourceHealth, SourceMarks
from watcher.standing import Standing, standings
from watcher.store import Store

log = structlog.get_logger("watcher.poller")

Clock = Callable[[], datetime]
Route = Callable[[Event], list[str]]
"""The sinks that must receive an event (`Dispatcher.route`), decided before the commit."""
OnEvents = Callable[[list[Event]], None]
_WILDCARD = "*"

MARKS_EVERY = 60.0
"""Seconds a poll that writes nothing else may leave the saved marks (last success, sweep
place, budget window) behind."""

BASELINE_CHUNK = 5000
"""Runs of a quiet baseline written per transaction, ahead of the poll's own commit."""


@dataclass(slots=True)
class PollReport:
    source: str
    ok: bool = True
    skipped: bool = False
    agents: int = 0
    events: list[Event] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)
    throttled: int = 0
    """Requests the platform refused with 429 (the agents wait; not an error)."""
    planned: dict[str, int] = field(default_factory=dict)
    """Listings made, by why (changed, active, sweep)."""
    deferred: dict[str, int] = field(default_factory=dict)
    """Agents due but not listed, by why ("budget")."""
    budget_wait: float | None = None
    """Seconds until the request budget has a slot again, when `watcher once` found it
    spent."""

    @property
    def error_line(self) -> str | None:
        return str(self.errors[0]) if self.errors else None


@dataclass(slots=True)
class _QuietBaseline:
    """Agents seen for the first time whose history is recorded without a single event."""

    agents: list[Agent] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    written_agents: int = 0
    written_runs: int = 0

    def add(self, agent: Agent, changes: list[Change]) -> None:
        self.agents.append(agent)
        self.changes.extend(changes)

    def written(self) -> None:
        self.written_agents += len(self.agents)
        self.written_runs += len(self.changes)
        self.agents, self.changes = [], []


@dataclass(slots=True)
class Cycle:
    """One poll as it goes through the stages."""

    now: datetime
    force: bool
    report: PollReport
    first: bool
    """The source's very first poll: what exists is its baseline."""
    spent: int
    """The source's request count when the cycle began."""
    events: list[Event] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    records: dict[str, AgentRecord] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)
    baselined: list[Agent] = field(default_factory=list)
    quiet: _QuietBaseline = field(default_factory=_QuietBaseline)
    enriched: int = 0
    """Events up to this index went through enrichment."""
    new_agents: set[str] = field(default_factory=set)
    """Agents recorded for the first time in this cycle."""
    retries: list[RetryRow] = field(default_factory=list)
    """Retries the rules scheduled, written with the cycle."""
    abandoned: bool = False

    @property
    def ts(self) -> float:
        return self.now.timestamp()


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
        self.route = route
        self.on_events = on_events
        self.runs = store.load_runs(source.name)
        self.health = store.source_health(source.name)
        self.standings: dict[str, Standing] = standings(store.finishes(source.name))
        self.fleet = Fleet(store.load_agents(source.name), wildcard=source.config.agents == ["*"])
        marks = store.marks(source.name)
        self.last_success: datetime | None = marks.last_success
        self.cursor: str | None = marks.cursor
        self._saved = marks
        source.budget.restore(marks.budget)
        source.fingerprints.restore(store.listings(source.name))
        self._started = clock().timestamp()
        self.hinted: bool | None = None
        """Does the platform give usable change hints? (None: not asked yet.)"""
        self._agents_at = float("-inf")
        self._agents_listed: datetime | None = None
        """When this process last read the agent listing of a source without hints."""
        self._not_before = float("-inf")
        self._lock = asyncio.Lock()
        self._current: asyncio.Task[object] | None = None
        book = rules or RuleBook([])
        self.judge = Judge(
            source=source.name,
            kind=source.kind,
            book=book,
            store=store,
            run_url=source.run_url,
            schedule_refresh=schedule_refresh,
        )
        self.retrier = Retrier(source, store, book)
        self._stages: tuple[Stage, ...] = (
            self._discover,
            self._first_round,
            self._enrich,
            self._sweep,
            self._enrich,
            self._apply_rules,
        )

    @property
    def name(self) -> str:
        return self.source.name

    def prune(self) -> int:
        """Forget runs that can no longer appear in a listing (see `Store.prune_runs`)."""
        keep = max(200, 4 * self.source.history_depth)
        removed = self.store.prune_runs(self.name, keep)
        if removed:
            self.runs = self.store.load_runs(self.name)
        return removed

    def sweep_age(self) -> float | None:
        """Seconds since the runs of the agent listed least recently were listed (an agent
        this process has not listed yet counts from its start); None without agents."""
        if not self.fleet:
            return None
        now = self.clock().timestamp()
        oldest = min((m.listed_at or self._started) for m in self.fleet.members.values())
        return max(0.0, now - oldest)

    @property
    def cadence(self) -> Cadence:
        """How often agents are due: active ones every `poll_interval_active`; the others every
        `sweep_interval` where hints say what changed, else every `poll_interval`."""
        cfg = self.source.config
        idle = cfg.sweep_interval if self.hinted else cfg.poll_interval
        slack = cfg.poll_interval_active / 2  # a tick a little early still counts
        return Cadence(active=cfg.poll_interval_active, idle=idle, slack=slack)

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
        cycle = Cycle(now, force, report, first=not self.fleet, spent=self._spent())
        for stage in self._stages:
            await stage(cycle)
            if cycle.abandoned:
                report.ok = False
                return report
        if self._commit(cycle):
            self.retrier.committed(cycle.retries)
            await self._send_retries(cycle.now)
        return report

    # --- stages --------------------------------------------------------------------------------

    async def _discover(self, cycle: Cycle) -> None:
        """Which agents there are, and which have news: the platform's change hints, or its
        agents where it gives none — re-read every `poll_interval`, or every `sweep_interval`
        under a request limit (the listing says nothing of runs: it only finds new agents)."""
        cfg = self.source.config
        every = cfg.poll_interval if self.source.budget.unlimited else cfg.sweep_interval
        try:
            with purpose("hints"):
                if cfg.use_hints and self.hinted is not False:
                    await self._read_hints(cycle)
                elif cycle.force or cycle.ts - self._agents_at >= every - 1:
                    agents = await self.source.agents()
                    if self.fleet.wildcard and self.hinted is not None:
                        self.fleet.forget(a.id for a in agents)
                    self._adopt(cycle, agents)
        except Exception as err:
            self._failed(cycle, self._as_source_error(err))

    def _adopt(self, cycle: Cycle, agents: list[Agent]) -> None:
        """Take a complete agent listing of a source without hints: an agent that appeared
        after the first poll is news from the last listing that did not have it."""
        since = None
        if self.fleet.wildcard and not cycle.first:
            since = self._agents_listed or self.last_success
        self._record(cycle, self.fleet.adopt(agents, now=cycle.now, since=since))
        self._agents_listed = cycle.now
        self._agents_at = cycle.ts

    async def _read_hints(self, cycle: Cycle) -> None:
        cfg = self.source.config
        complete = (
            not self.fleet
            or self.fleet.complete_at is None
            or (cycle.now - self.fleet.complete_at).total_seconds() >= cfg.sweep_interval
        )
        hints = await self.source.hints(self.fleet.watermark, complete=complete)
        if hints is None:  # a platform without hints: its agents, then, from now on
            self.hinted = False
            self._adopt(cycle, await self.source.agents())
            return
        since = self.fleet.complete_at or self.last_success
        found = self.fleet.observe(hints.agents, now=cycle.now, since=since, first=cycle.first)
        self._record(cycle, found)
        if hints.complete:
            self.fleet.complete_at = cycle.now
            if self.fleet.wildcard:
                for agent_id in self.fleet.forget(a.id for a, _ in hints.agents):
                    log.info("agent no longer listed; no longer watched", source=self.name,
                             agent_id=agent_id)  # fmt: skip
            usable = any(hint.last_activity is not None for _, hint in hints.agents)
            if usable != self.hinted and (self.hinted is not None or not usable):
                if usable:
                    log.info("change hints available again", source=self.name)
                else:
                    log.warning("the platform gives no change hints (no lastActivity); every "
                                "agent is swept, as the request budget allows",
                                source=self.name)  # fmt: skip
            self.hinted = usable

    async def _first_round(self, cycle: Cycle) -> None:
        await self._list(cycle, first=True)

    async def _sweep(self, cycle: Cycle) -> None:
        await self._list(cycle, first=False)

    async def _list(self, cycle: Cycle, *, first: bool) -> None:
        """List the runs of the agents the planner picks for this round, and diff each."""
        rounds = HINTED if self.hinted else SWEPT
        tracks = self.fleet.tracks(self.runs, after=self.cursor)
        allowance = self._allowance(cycle)
        chosen = plan(
            tracks,
            now=cycle.ts,
            allowance=None if allowance is None else allowance // self.source.listing_cost,
            cadence=self.cadence,
            reasons=rounds.first if first else rounds.second,
            fair=rounds.fair and not first,
            force=cycle.force,
        )
        report = cycle.report
        for _, reason in chosen.listings:
            report.planned[reason] = report.planned.get(reason, 0) + 1
        for why, count in chosen.skipped.items():
            report.deferred[why] = report.deferred.get(why, 0) + count
        if not chosen.listings:
            return
        report.agents += len(chosen.listings)
        for label in ("runs", "sweep"):  # the metrics tell the sweep from the rest
            agents = [a for a, r in chosen.listings if (r is Reason.SWEEP) == (label == "sweep")]
            if agents:
                with purpose(label):
                    await self._diff_listings(cycle, agents)
        swept = [a.id for a, reason in chosen.listings if reason is Reason.SWEEP]
        if swept:
            self.cursor = swept[-1]

    async def _diff_listings(self, cycle: Cycle, due: list[Agent]) -> None:
        wildcard_ok = _WILDCARD in {a.id for a in due}
        async with contextlib.aclosing(self._answers(due)) as answers:
            async for agent, result in answers:
                if isinstance(result, SourceError):
                    self._failed(cycle, result)
                    wildcard_ok = False
                    continue
                cycle.listed.append(agent.id)
                if result is UNCHANGED:
                    continue  # the same bytes as the listing last committed: nothing changed
                self._diff(cycle, agent, result)
                if cycle.abandoned:
                    return
        if wildcard_ok:
            # One listing answered for every agent (a source overriding `fetch`): the wildcard
            # unit was polled, whichever agents the answer named.
            cycle.listed.append(_WILDCARD)

    def _diff(self, cycle: Cycle, agent: Agent, listing: list[Any]) -> None:
        previous = self.runs.get(agent.id)
        member = self.fleet.members.get(agent.id)
        if member is not None and not member.listed:
            since = member.since
        elif self.fleet.wildcard and not cycle.first:
            since = self.fleet.complete_at or self.last_success  # an agent it just found
        else:
            since = None
        diff = diff_agent(
            previous, listing, now=cycle.now, source_kind=self.source.kind, since=since
        )
        if previous is not None:
            cycle.events.extend(diff.events)
            cycle.changes.extend(diff.changes)
            return
        name = agent.name or next((s.agent_name for s in listing if s.agent_name), None)
        if diff.events:
            cycle.baselined.append(Agent(agent.id, name))
            cycle.events.extend(diff.events)
            cycle.changes.extend(diff.changes)
            return
        cycle.quiet.add(Agent(agent.id, name), diff.changes)
        if len(cycle.quiet.changes) >= BASELINE_CHUNK and not self._write_ahead(cycle):
            cycle.abandoned = True

    async def _enrich(self, cycle: Cycle) -> None:
        """Add what the platform can tell about each new finish (diagnostics, failed steps, a
        run's message), newest first, as far as the budget allows; the rest go without."""
        start, cycle.enriched = cycle.enriched, len(cycle.events)
        todo = [
            i for i in range(start, len(cycle.events))
            if cycle.events[i].type == EventType.RUN_FINISHED
        ]  # fmt: skip
        allowance = self._allowance(cycle)
        if allowance is not None:
            todo = todo[::-1][:allowance]
        if not todo:
            return

        async def one(index: int) -> None:
            event = cycle.events[index]
            try:
                cycle.events[index] = await self.source.enrich(event)
            except Exception as err:  # context is a bonus; the alert goes out without it
                log.warning("run details unavailable", source=self.name,
                            run_id=event.run_id, error=redact(str(err)))  # fmt: skip

        with purpose("enrich"):
            await asyncio.gather(*(one(i) for i in todo))

    async def _apply_rules(self, cycle: Cycle) -> None:
        """What no status shows — stuck runs, anomalies, missed schedules (`watcher.judge`) —
        and the retries the rules ask for (`watcher.retrying`)."""
        views = {
            agent_id: AgentView(m.agent.name, m.recorded_at, m.listed_at)
            for agent_id, m in self.fleet.members.items()
        }
        for agent_id in cycle.listed:  # listed in this cycle: its runs are known up to now
            member = self.fleet.members.get(agent_id)
            if member is not None:
                views[agent_id] = AgentView(member.agent.name, member.recorded_at, cycle.ts)
        await self._read_schedules(cycle, views)
        cycle.events.extend(
            self.judge.judge(
                now=cycle.now,
                events=cycle.events,
                changes=cycle.changes,
                standings=self.standings,
                agents=views,
            )
        )
        cycle.retries = self.retrier.plan(cycle.events, cycle.now)

    async def _read_schedules(self, cycle: Cycle, views: dict[str, AgentView]) -> None:
        """The platform's own schedules, every `schedule_refresh`, for the rules that expect
        them. A failure to read them is logged; it fails nothing."""
        wanted = self.judge.scheduled_agents(cycle.now, views)
        if not wanted:
            return
        try:
            with purpose("schedules"):
                starts = await self.source.schedules(wanted)
        except SourceError as err:
            log.warning("schedules unreadable", source=self.name, error=err.detail)
            return
        self.judge.expect(((s.agent_id, s.at, s.schedule) for s in starts or ()), cycle.now)

    async def _send_retries(self, now: datetime) -> None:
        """Ask the platform for the retries that are due (after the cycle's commit)."""

        def record(row: RetryRow, events: list[Event]) -> None:
            fresh = self.store.commit(
                source=self.name,
                retries=[row],
                events=events,
                targets={event.id: self.route(event) for event in events},
                now=now,
                now_ts=now.timestamp(),
            )
            if fresh and self.on_events:
                self.on_events(fresh)

        for row in self.retrier.due(now):
            with purpose("retry"):
                await self.retrier.send(row, now, record)

    # --- the commit ----------------------------------------------------------------------------

    def _commit(self, cycle: Cycle) -> bool:
        report = cycle.report
        cycle.baselined.extend(cycle.quiet.agents)  # the rest of a quiet baseline goes now
        cycle.changes.extend(cycle.quiet.changes)
        self._listed(cycle)
        if cycle.first:
            self._announce_baseline(cycle)
        after = self._annotate(cycle)
        health = self._health_change(report.errors, cycle.now, cycle.events)
        success = None if report.errors else cycle.now
        writes = bool(cycle.changes or cycle.records or cycle.events or health)
        marks: SourceMarks | None = self._marks(success or self.last_success)
        if not writes and not self._marks_due(cycle.now):
            marks = None  # a quiet poll writes nothing; the marks go at least once a minute
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
        self.standings = after
        if marks is not None:
            self._saved = marks
        if report.errors:
            report.ok = False
            self._defer(cycle.ts, report.errors)
        else:
            self.last_success = cycle.now
        report.events = fresh
        if fresh and self.on_events:
            self.on_events(fresh)
        return True

    def _listed(self, cycle: Cycle) -> None:
        """Agents whose runs were listed now carry the hint they were listed under."""
        for agent_id in cycle.listed:
            record = self.fleet.listed(agent_id, cycle.ts)
            if record is not None:
                cycle.records[agent_id] = record
        for agent in cycle.baselined:
            if agent.id not in cycle.records and agent.id not in self.fleet.members:
                cycle.records[agent.id] = AgentRecord(agent.id, agent.name)

    def _announce_baseline(self, cycle: Cycle) -> None:
        cycle.new_agents.update(a.id for a in cycle.baselined)
        cycle.new_agents.update(self.fleet.members)
        cycle.new_agents.discard(_WILDCARD)
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
        after = {agent_id: s.copy() for agent_id, s in self.standings.items()}
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

    def _write_ahead(self, cycle: Cycle) -> bool:
        """Write the agents of a quiet baseline collected so far, ahead of the poll's commit:
        they emit nothing, so no event waits on them, and a baseline of 10,000 agents is not
        held in memory whole. False if the write failed (logged; the poll is abandoned)."""
        quiet = cycle.quiet
        ids = {a.id for a in quiet.agents}
        records = [
            self.fleet.listed(a.id, cycle.ts) or AgentRecord(a.id, a.name) for a in quiet.agents
        ]
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
        _fold(self.standings, quiet.changes)
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
        for agent_id in listed:
            self.runs.setdefault(agent_id, {})
        for change in changes:
            snap = change.snapshot
            self.runs.setdefault(snap.agent_id, {})[snap.run_id] = change.state
        self.source.fingerprints.confirm(listed)
        if health is not None:
            self.health = health  # its event, or `outages`, said so in the log

    # --- marks, budget, errors ------------------------------------------------------------------

    def _marks(self, success: datetime | None) -> SourceMarks:
        return SourceMarks(success, self.cursor, tuple(self.source.budget.window()))

    def _marks_due(self, now: datetime) -> bool:
        saved = self._saved.last_success
        return saved is None or (now - saved).total_seconds() >= MARKS_EVERY

    def save_marks(self) -> None:
        """Write the last success, the sweep's place and the budget's window (at shutdown)."""
        marks = self._marks(self.last_success)
        if marks == self._saved:
            return
        now = self.clock()
        self.store.commit(source=self.name, marks=marks, now=now, now_ts=now.timestamp())
        self._saved = marks

    def _spent(self) -> int:
        return sum(self.source.requests.values())

    def _allowance(self, cycle: Cycle) -> int | None:
        """Requests this cycle may still make: what the budget has free, and — but for
        `watcher once` — no more than a cycle's share of the rate, so the hints of the
        cycles to come are always affordable. None: unlimited."""
        budget = self.source.budget
        free = budget.available()
        if free is None:
            return None
        if cycle.force:
            return free
        share = math.ceil(budget.rate() * self.source.config.poll_interval_active / 60)
        return max(0, min(free, share - (self._spent() - cycle.spent)))

    def _failed(self, cycle: Cycle, err: SourceError) -> None:
        if isinstance(err, BudgetSpent):  # `watcher once`: the next run lists it
            cycle.report.deferred["budget"] = cycle.report.deferred.get("budget", 0) + 1
            cycle.report.budget_wait = err.retry_after
            return
        if isinstance(err, SourceThrottled):
            cycle.report.throttled += 1
            log.info("throttled by the platform (429); the agent waits for the next cycle",
                     source=self.name, agent_id=err.agent_id)  # fmt: skip
            return
        cycle.report.errors.append(err)

    async def _answers(self, due: Sequence[Agent]) -> AsyncGenerator[tuple[Agent, Any], None]:
        """The source's answers, each a list of runs, UNCHANGED or a SourceError."""
        answered: set[str] = set()
        try:
            async for agent, result in self.source.fetch(due):
                answered.add(agent.id)
                if not isinstance(result, list | SourceError | Unchanged):
                    result = self._as_source_error(result, agent.id)
                yield agent, result
        except Exception as err:  # a bug in a source must not take the daemon down
            error = self._as_source_error(err)
            for agent in due:
                if agent.id not in answered:
                    yield agent, error

    def _as_source_error(self, err: Exception, agent_id: str | None = None) -> SourceError:
        """A source's typed error as is; anything else is a bug or an answer we cannot read:
        logged with its traceback, and treated as a protocol error so the daemon keeps going."""
        if isinstance(err, SourceError):
            return err
        log.error("unexpected error in source", source=self.name, agent_id=agent_id, exc_info=err)
        where = f"agent {agent_id}: " if agent_id else ""
        return SourceProtocolError(
            self.name, redact(f"{where}unexpected {type(err).__name__}: {err}"), agent_id=agent_id
        )

    def _health_change(
        self, errors: list[SourceError], now: datetime, events: list[Event]
    ) -> SourceHealth | None:
        """The new health to store, if it changed, adding the event that says so; run events
        of a failing source say that it fails (`watcher.outages`)."""
        health, said = health_change(
            self.health,
            errors,
            now,
            source=self.name,
            kind=self.source.kind,
            after=self.source.config.source_failed_after,
        )
        note_failing(events, health or self.health)
        events.extend(said)
        return health

    def _defer(self, ts: float, errors: list[SourceError]) -> None:
        waits = [
            e.retry_after
            for e in errors
            if isinstance(e, SourceUnavailable) and e.retry_after is not None
        ]
        wait = max([self.source.config.poll_interval_active, *waits])
        self._not_before = ts + wait - self.source.config.poll_interval_active / 2

    def _record(self, cycle: Cycle, records: Iterable[AgentRecord]) -> None:
        for record in records:
            cycle.records[record.id] = record


def _fold(into: dict[str, Standing], changes: Iterable[Change]) -> None:
    """Take the finishes a baseline records quietly (changes run oldest first) into the
    agents' standings: what a later "recovered" or a streak counts from."""
    for change in changes:
        snap = change.snapshot
        if snap.outcome is not None:
            into.setdefault(snap.agent_id, Standing()).finished(
                snap.outcome.value, snap.ended_at, snap.duration_s, snap.counts.records
            )
