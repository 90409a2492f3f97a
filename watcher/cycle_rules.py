"""The rules' part of a poll: what no status shows, and the retries the rules ask for.

Before the commit, the judge (`watcher.judge`) is handed what the cycle saw and answers with
its findings — stuck runs, anomalies, missed schedules (reading the platform's own schedules
when a rule expects them) — and the retrier (`watcher.retrying`) schedules the retries of new
failures; both are written with the cycle. After the commit, the retries that are due are
asked of the platform, each recorded before and after it is sent.
"""

from __future__ import annotations

import structlog

from watcher.cycle import Cycle, Memory, OnEvents, Route
from watcher.errors import SourceError
from watcher.events import Event
from watcher.judge import AgentView, Judge
from watcher.retrying import Retrier
from watcher.rulestore import RetryRow
from watcher.sources.base import Source, purpose
from watcher.store import Store

log = structlog.get_logger("watcher.poller")


class RulesStage:
    def __init__(
        self,
        source: Source,
        store: Store,
        memory: Memory,
        *,
        judge: Judge,
        retrier: Retrier,
        route: Route,
    ) -> None:
        self.source = source
        self.store = store
        self.memory = memory
        self.judge = judge
        self.retrier = retrier
        self.route = route

    async def apply(self, cycle: Cycle) -> None:
        """The judge's findings and the retries to schedule, added to the cycle."""
        views = self._views(cycle)
        await self._read_schedules(cycle, views)
        cycle.events.extend(
            self.judge.judge(
                now=cycle.now,
                events=cycle.events,
                changes=[*cycle.quiet.changes, *cycle.changes],
                standings=self.memory.standings,
                agents=views,
            )
        )
        cycle.retries = self.retrier.plan(cycle.events, cycle.now)

    def _views(self, cycle: Cycle) -> dict[str, AgentView]:
        """What the judge needs of each agent. Its runs are known up to now when it was
        listed in this cycle — or listed before, when the change hints read now show it has
        not moved since (no run started: a missed schedule is said without waiting for the
        sweep to list it)."""
        listed = set(cycle.listed)
        views = {}
        for agent_id, m in self.memory.fleet.members.items():
            unmoved = cycle.hinted and m.listed_at is not None and not m.changed
            known = cycle.ts if agent_id in listed or unmoved else m.listed_at
            views[agent_id] = AgentView(m.agent.name, m.recorded_at, known)
        return views

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
            log.warning("schedules unreadable", source=self.source.name, error=err.detail)
            return
        self.judge.expect(((s.agent_id, s.at, s.schedule) for s in starts or ()), cycle.now)

    async def committed(self, cycle: Cycle, on_events: OnEvents | None) -> None:
        """The cycle is written: its retries count from now, and those due are asked of the
        platform, each new event handed to `on_events`."""
        self.retrier.committed(cycle.retries)
        now = cycle.now

        def record(row: RetryRow, events: list[Event]) -> None:
            fresh = self.store.commit(
                source=self.source.name,
                retries=[row],
                events=events,
                targets={event.id: self.route(event) for event in events},
                now=now,
                now_ts=now.timestamp(),
            )
            if fresh and on_events:
                on_events(fresh)

        for row in self.retrier.due(now):
            with purpose("retry"):
                await self.retrier.send(row, now, record)
