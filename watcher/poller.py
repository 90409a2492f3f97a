"""Polls one source: which agents are due, fetch, diff, commit — and the source's health.

- Adaptive cadence: the scheduler ticks every `poll_interval_active`; an agent with a pending or
  running run is due on every tick, the others once per `poll_interval`.
- A poll's run changes and the events they cause commit in one transaction; the in-memory index
  is updated only after that commit succeeded, so a failed write is simply diffed again.
  Agents seen for the first time that emit nothing (a baseline) may be written ahead in chunks
  of `BASELINE_CHUNK` runs, so a first start with 10,000 agents is not held in memory whole.
- An agent whose listing failed changes nothing. When a source turns from healthy to failing it
  emits `source.failed` once (and logs once); when it works again, `source.recovered` once.
  The failing state is stored, so a restart during an outage does not alert again.
- A failing source is tried again on the next tick, or later when the platform said Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from watcher.diff import Change, diff_agent
from watcher.errors import SourceError, SourceProtocolError, SourceUnavailable
from watcher.models import (
    Agent,
    Event,
    EventType,
    Phase,
    RunState,
    iso,
    source_event,
    with_data,
)
from watcher.redact import redact
from watcher.sources.base import Source
from watcher.sources.http import UNCHANGED, Unchanged
from watcher.store import Route, SourceHealth, Store

log = structlog.get_logger("watcher.poller")

Clock = Callable[[], datetime]
_WILDCARD = "*"
OnEvents = Callable[[list[Event]], None]


@dataclass(slots=True)
class PollReport:
    source: str
    ok: bool = True
    skipped: bool = False
    agents: int = 0
    events: list[Event] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)

    @property
    def error_line(self) -> str | None:
        return str(self.errors[0]) if self.errors else None


SINCE_REFRESH = 60.0
"""Seconds a successful poll that writes nothing else may leave the saved `since` behind."""

BASELINE_CHUNK = 5000
"""Runs of a quiet baseline written per transaction, ahead of the poll's own commit."""


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


class SourcePoller:
    def __init__(
        self,
        source: Source,
        store: Store,
        *,
        clock: Clock,
        route: Route | None = None,
        on_events: OnEvents | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self.clock = clock
        self.route = route
        self.on_events = on_events
        self.runs: dict[str, dict[str, RunState]] = store.load_runs(source.name)
        self.health = store.source_health(source.name)
        self.last_outcome: dict[str, str] = store.last_outcomes(source.name)
        self._last_poll: dict[str, float] = {}
        self._agents: list[Agent] = []
        self._agents_at = float("-inf")
        self._not_before = float("-inf")
        self._lock = asyncio.Lock()
        self._current: asyncio.Task[object] | None = None
        self.last_success: datetime | None = store.last_success(source.name)
        self._saved_success = self.last_success  # what the state file holds
        source.attach_memory(lambda: self.runs)
        source.fingerprints.restore(store.listings(source.name))

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

    def is_active(self, agent_id: str) -> bool:
        """Does the agent have a run that is not finished (pending, running or unknown)?
        The wildcard agent `*` (one listing for all) is active when any agent is."""
        if agent_id == "*":
            return any(self.is_active(a) for a in self.runs if a != "*")
        return any(st.phase is not Phase.FINISHED for st in self.runs.get(agent_id, {}).values())

    def _is_due(self, agent_id: str, now: float) -> bool:
        last = self._last_poll.get(agent_id)
        if last is None:
            return True
        cfg = self.source.config
        slack = cfg.poll_interval_active / 2  # a tick that arrives a little early still counts
        interval = cfg.poll_interval_active if self.is_active(agent_id) else cfg.poll_interval
        return now - last >= interval - slack

    async def poll(self, *, force: bool = False) -> PollReport:
        """One pass. `force` polls every agent now, whatever is due (`watcher once`)."""
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
        ts = now.timestamp()
        report = PollReport(self.name)
        if not force and ts < self._not_before:
            report.skipped = True
            return report

        try:
            agents = await self._agent_list(ts, force)
        except Exception as err:
            report.errors.append(self._as_source_error(err))
            agents = []
        due = [a for a in agents if force or self._is_due(a.id, ts)]
        report.agents = len(due)

        events: list[Event] = []
        changes: list[Change] = []
        baselined: list[Agent] = []
        quiet = _QuietBaseline()
        ok_agents: list[str] = []
        first_baseline = not self.runs
        # An agent that appears after the first baseline — in this process or before a restart —
        # is news for what finished after the last good poll. (Agents added to the config are
        # baselined quietly: their history is old.)
        since = self.last_success if self.source.config.agents == ["*"] else None
        kind = self.source.kind
        wildcard_ok = _WILDCARD in {a.id for a in due}
        # Each listing is diffed as it arrives and then dropped: only what changed is kept.
        async with contextlib.aclosing(self._answers(due)) as answers:
            async for agent, result in answers:
                if isinstance(result, SourceError):
                    report.errors.append(result)
                    wildcard_ok = False
                    continue
                ok_agents.append(agent.id)
                if result is UNCHANGED:
                    continue  # the same bytes as the listing last committed: nothing changed
                previous = self.runs.get(agent.id)
                diff = diff_agent(previous, result, now=now, source_kind=kind, since=since)
                if previous is None:
                    name = agent.name or next((s.agent_name for s in result if s.agent_name), None)
                    if not diff.events:
                        quiet.add(Agent(agent.id, name), diff.changes)
                        if len(quiet.changes) >= BASELINE_CHUNK and not self._write(quiet, now):
                            report.ok = False
                            return report
                        continue
                    baselined.append(Agent(agent.id, name))
                events.extend(diff.events)
                changes.extend(diff.changes)
        if wildcard_ok:
            # One listing answered for every agent (a source overriding `fetch`): the wildcard
            # unit was polled, whichever agents the answer named.
            ok_agents.append(_WILDCARD)
        baselined.extend(quiet.agents)  # the rest of a quiet baseline goes with the poll
        changes.extend(quiet.changes)

        new_agents = len(baselined) + quiet.written_agents
        if first_baseline and new_agents:
            new_ids = {a.id for a in baselined}
            events.insert(
                0,
                source_event(
                    EventType.SOURCE_BASELINED,
                    source=self.name,
                    source_kind=kind,
                    ts=now,
                    message=f"watching {new_agents} agent(s); existing history recorded",
                    agents=new_agents,
                    runs=quiet.written_runs
                    + sum(1 for c in changes if c.snapshot.agent_id in new_ids),
                ),
            )
        events, last_outcome = await self._annotate(events, changes, baselined)
        health = self._health_change(report.errors, now, events)
        writes = bool(changes or baselined or events or health)
        success = None if report.errors else now
        if success and not writes and not self._since_due(now):
            success = None  # a quiet poll writes nothing; `since` is saved at least once a minute

        try:
            fresh = self.store.commit(
                source=self.name,
                changes=changes,
                new_agents=baselined,
                events=events,
                health=health,
                listings=self.source.fingerprints.pending(ok_agents),
                last_success=success,
                route=self.route,
                now=now,
                now_ts=ts,
            )
        except Exception as err:  # disk full, read-only file system, corrupt file
            self._write_failed(err)
            report.ok = False
            return report

        self._apply(changes, baselined, ok_agents, ts, health)
        self.source.fingerprints.confirm(ok_agents)
        self.last_outcome = last_outcome
        if success is not None:
            self._saved_success = success
        if report.errors:
            report.ok = False
            self._defer(ts, report.errors)
        else:
            self.last_success = now
        report.events = fresh
        if fresh and self.on_events:
            self.on_events(fresh)
        return report

    def _since_due(self, now: datetime) -> bool:
        saved = self._saved_success
        return saved is None or (now - saved).total_seconds() >= SINCE_REFRESH

    def save_success(self) -> None:
        """Write the last successful poll to the state file, if it has moved (at shutdown)."""
        last = self.last_success
        if last is None or last == self._saved_success:
            return
        now = self.clock()
        self.store.commit(source=self.name, last_success=last, now=now, now_ts=now.timestamp())
        self._saved_success = last

    def _write(self, quiet: _QuietBaseline, now: datetime) -> bool:
        """Write the agents of a quiet baseline collected so far, ahead of the poll's commit:
        they emit nothing, so no event waits on them, and a baseline of 10,000 agents is not
        held in memory whole. False if the write failed (logged; the poll is abandoned)."""
        ids = [a.id for a in quiet.agents]
        try:
            self.store.commit(
                source=self.name,
                changes=quiet.changes,
                new_agents=quiet.agents,
                listings=self.source.fingerprints.pending(ids),
                now=now,
                now_ts=now.timestamp(),
            )
        except Exception as err:
            self._write_failed(err)
            return False
        self._apply(quiet.changes, quiet.agents, ids, now.timestamp(), None)
        self.source.fingerprints.confirm(ids)
        _baseline_outcomes(self.last_outcome, quiet.changes)
        quiet.written()
        return True

    def _write_failed(self, err: Exception) -> None:
        log.error(
            "state write failed; the poll will be diffed again",
            source=self.name,
            error=redact(f"{type(err).__name__}: {err}"),
        )

    async def _annotate(
        self, events: list[Event], changes: list[Change], baselined: list[Agent]
    ) -> tuple[list[Event], dict[str, str]]:
        """Give each finish the agent's previous outcome (for "recovered" alerts) and what the
        platform can tell about it (diagnostics). Returns the events and the outcomes after."""
        outcomes = dict(self.last_outcome)
        new_ids = {a.id for a in baselined}
        _baseline_outcomes(outcomes, (c for c in changes if c.snapshot.agent_id in new_ids))
        annotated = []
        for event in events:
            if event.type == EventType.RUN_FINISHED and event.agent_id and event.outcome:
                extra: dict[str, object] = {"agent_previous_outcome": outcomes.get(event.agent_id)}
                outcomes[event.agent_id] = event.outcome.value
                try:
                    details = await self.source.describe(event)
                except Exception as err:  # context is a bonus; the alert goes out without it
                    log.warning("run details unavailable", source=self.name,
                                run_id=event.run_id, error=redact(str(err)))  # fmt: skip
                    details = None
                if details:
                    extra.update(details)
                event = with_data(event, **extra)
            annotated.append(event)
        return annotated, outcomes

    async def _agent_list(self, ts: float, force: bool) -> list[Agent]:
        if force or ts - self._agents_at >= self.source.config.poll_interval - 1:
            self._agents = await self.source.agents()
            self._agents_at = ts
        return self._agents

    async def _answers(self, due: list[Agent]) -> AsyncIterator[tuple[Agent, Any]]:
        """The source's answers, each a list of runs, UNCHANGED or a SourceError."""
        if not due:
            return
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
        """The new health to store, if it changed, adding the event that says so."""
        kind = self.source.kind
        if errors and not self.health.failing:
            first = errors[0]
            events.append(
                source_event(
                    EventType.SOURCE_FAILED,
                    source=self.name,
                    source_kind=kind,
                    ts=now,
                    message=redact(first.detail),
                    id_parts=(iso(now),),
                    error=first.kind,
                    http_status=first.http_status,
                    agent_id=first.agent_id,
                    failed_requests=len(errors),
                )
            )
            return SourceHealth(True, now, redact(str(first)))
        if not errors and self.health.failing:
            since = self.health.since
            down = (now - since).total_seconds() if since else None
            events.append(
                source_event(
                    EventType.SOURCE_RECOVERED,
                    source=self.name,
                    source_kind=kind,
                    ts=now,
                    message=f"working again after {down:.0f}s" if down is not None else None,
                    id_parts=(iso(since),),
                    down_s=down,
                )
            )
            return SourceHealth(False)
        return None

    def _apply(
        self,
        changes: Iterable[Change],
        baselined: Iterable[Agent],
        ok_agents: Iterable[str],
        ts: float,
        health: SourceHealth | None,
    ) -> None:
        for agent in baselined:
            self.runs.setdefault(agent.id, {})
        for change in changes:
            snap = change.snapshot
            self.runs.setdefault(snap.agent_id, {})[snap.run_id] = change.state
        for agent_id in ok_agents:
            self._last_poll[agent_id] = ts
        if health is not None:
            self.health = health  # the source.failed / source.recovered event is its log line

    def _defer(self, ts: float, errors: list[SourceError]) -> None:
        waits = [
            e.retry_after
            for e in errors
            if isinstance(e, SourceUnavailable) and e.retry_after is not None
        ]
        wait = max([self.source.config.poll_interval_active, *waits])
        self._not_before = ts + wait - self.source.config.poll_interval_active / 2


def _baseline_outcomes(outcomes: dict[str, str], changes: Iterable[Change]) -> None:
    """Record each baselined agent's last outcome: its latest finish (changes run oldest first),
    the outcome a "recovered" alert compares against."""
    for change in changes:
        snap = change.snapshot
        if snap.outcome is not None:
            outcomes[snap.agent_id] = snap.outcome.value
