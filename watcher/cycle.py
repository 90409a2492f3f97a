"""What a source's poll works on: the `Cycle` one poll carries through its stages, the
`Memory` the poller carries from one poll to the next, and the `PollReport` it answers with.

Every stage of a poll reads and adds to the same `Cycle`, and reads the same `Memory`; keeping
both apart from the stages lets each stage be read on its own. The helpers below are what more
than one stage needs: the requests a cycle may still make (`allowance`), and how a failure
becomes the report's (`Cycle.failed`, `as_source_error`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from watcher.diff import Change
from watcher.errors import BudgetSpent, SourceError, SourceProtocolError, SourceThrottled
from watcher.events import Event
from watcher.fleet import Fleet
from watcher.redact import redact
from watcher.rulestore import RetryRow
from watcher.runs import Agent, RunState
from watcher.runstore import AgentRecord
from watcher.sources.base import Source
from watcher.sourcestate import SourceHealth
from watcher.standing import Standing

log = structlog.get_logger("watcher.poller")

Route = Callable[[Event], list[str]]
"""The sinks that must receive an event (`Dispatcher.route`), decided before the commit."""
OnEvents = Callable[[list[Event]], None]
"""Where the events a commit wrote go next (the dispatcher)."""


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
class Memory:
    """What the poller knows of its source between polls, loaded from the store when it
    starts. The runs, health, standings and last success change only once a commit wrote
    them; the sweep's place and whether hints are usable change as a poll learns them."""

    runs: dict[str, dict[str, RunState]]
    """Each agent's runs, as committed."""
    health: SourceHealth
    standings: dict[str, Standing]
    """Each agent's streaks, as committed (`watcher.standing`)."""
    fleet: Fleet
    last_success: datetime | None
    cursor: str | None
    """The agent the last sweep stopped at (the next goes on after it)."""
    hinted: bool | None = None
    """Does the platform give usable change hints? (None: not asked yet.)"""


@dataclass(slots=True)
class QuietBaseline:
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
    quiet: QuietBaseline = field(default_factory=QuietBaseline)
    enriched: int = 0
    """Events up to this index went through enrichment."""
    new_agents: set[str] = field(default_factory=set)
    """Agents recorded for the first time in this cycle."""
    retries: list[RetryRow] = field(default_factory=list)
    """Retries the rules scheduled, written with the cycle."""
    hinted: bool = False
    """The platform's change hints were read in this cycle (and are usable): an agent whose
    hint has not moved since its runs were listed has had no run since, up to now."""
    abandoned: bool = False

    @property
    def ts(self) -> float:
        return self.now.timestamp()

    def record(self, records: Iterable[AgentRecord]) -> None:
        """Agents to write with the cycle (new ones, or ones whose hint changed)."""
        for record in records:
            self.records[record.id] = record

    def failed(self, err: SourceError) -> None:
        """Count a failure where it belongs: a spent budget defers (`watcher once`: the next
        run lists it), a 429 only waits for the next cycle, anything else is an error."""
        report = self.report
        if isinstance(err, BudgetSpent):
            report.deferred["budget"] = report.deferred.get("budget", 0) + 1
            report.budget_wait = err.retry_after
            return
        if isinstance(err, SourceThrottled):
            report.throttled += 1
            log.info("throttled by the platform (429); the agent waits for the next cycle",
                     source=report.source, agent_id=err.agent_id)  # fmt: skip
            return
        report.errors.append(err)


def spent(source: Source) -> int:
    """Requests the source has made since it started."""
    return sum(source.requests.values())


def allowance(source: Source, cycle: Cycle) -> int | None:
    """Requests this cycle may still make: what the budget has free, and — but for
    `watcher once` — no more than a cycle's share of the rate, so the hints of the
    cycles to come are always affordable. None: unlimited."""
    budget = source.budget
    free = budget.available()
    if free is None:
        return None
    if cycle.force:
        return free
    share = math.ceil(budget.rate() * source.config.poll_interval_active / 60)
    return max(0, min(free, share - (spent(source) - cycle.spent)))


def as_source_error(source: str, err: Exception, agent_id: str | None = None) -> SourceError:
    """A source's typed error as is; anything else is a bug or an answer we cannot read:
    logged with its traceback, and treated as a protocol error so the daemon keeps going."""
    if isinstance(err, SourceError):
        return err
    log.error("unexpected error in source", source=source, agent_id=agent_id, exc_info=err)
    where = f"agent {agent_id}: " if agent_id else ""
    return SourceProtocolError(
        source, redact(f"{where}unexpected {type(err).__name__}: {err}"), agent_id=agent_id
    )
