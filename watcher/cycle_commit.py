"""The last stage of a poll: the run changes it found and the events they cause, written in
one transaction (`Store.commit`), with each event's sinks decided before (the dispatcher's
`route`), so nothing is lost between the state file and an alert.

Before the write, each finish is given where its agent stands (`watcher.standing`: the outcome
before it, failures in a row, failing since, last success), a first poll says what it
baselined, and the source's health is brought up to date (`watcher.outages`). The `Memory`
— runs, standings, health, last success — changes only after the write succeeded, so a failed
write is simply diffed again.

A quiet baseline (agents seen for the first time that emit nothing) may be written ahead of
the commit in chunks, as the listing collects it (`write_ahead`). The marks — last success,
the sweep's place, the request budget's window — ride along with any write, and are written
on their own at least every `MARKS_EVERY` and at shutdown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import structlog

from watcher.config.problems import WILDCARD
from watcher.cycle import Cycle, Memory, Route
from watcher.diff import Change
from watcher.errors import SourceError
from watcher.events import Event, EventType, source_event, with_data
from watcher.judge import Judge
from watcher.outages import health_change, note_failing
from watcher.redact import redact
from watcher.runstore import AgentRecord
from watcher.sources.base import Source
from watcher.sourcestate import SourceHealth, SourceMarks
from watcher.standing import Standing
from watcher.store import Store

log = structlog.get_logger("watcher.poller")

MARKS_EVERY = 60.0
"""Seconds a poll that writes nothing else may leave the saved marks (last success, sweep
place, budget window) behind."""


class CommitStage:
    def __init__(
        self,
        source: Source,
        store: Store,
        memory: Memory,
        *,
        judge: Judge,
        route: Route,
        saved: SourceMarks,
    ) -> None:
        self.source = source
        self.store = store
        self.memory = memory
        self.judge = judge
        self.route = route
        self._saved = saved
        """The marks as last written."""

    @property
    def name(self) -> str:
        return self.source.name

    def write(self, cycle: Cycle) -> bool:
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

    def write_ahead(self, cycle: Cycle) -> bool:
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
        self.judge.follow(quiet.changes, cycle.now)
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

    # --- marks ---------------------------------------------------------------------------------

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

    def save_marks(self, clock: Callable[[], datetime]) -> None:
        """Write the last success, the sweep's place and the budget's window (at shutdown)."""
        marks = self._marks(self.memory.last_success)
        if marks == self._saved:
            return
        now = clock()
        self.store.commit(source=self.name, marks=marks, now=now, now_ts=now.timestamp())
        self._saved = marks


def _fold(into: dict[str, Standing], changes: Iterable[Change]) -> None:
    """Take the finishes a baseline records quietly (changes run oldest first) into the
    agents' standings: what a later "recovered" or a streak counts from."""
    for change in changes:
        snap = change.snapshot
        if snap.outcome is not None:
            into.setdefault(snap.agent_id, Standing()).finished(
                snap.outcome.value, snap.ended_at, snap.duration_s, snap.counts.records
            )
