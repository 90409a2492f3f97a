"""The stages of a poll that read runs: the listings the planner picks, and what the platform
can tell about the new finishes they show.

A poll lists in two rounds (`watcher.planner`): first the agents whose hint moved, then the
sweep and the active ones with what the budget leaves; after each, the new finishes are
enriched (diagnostics, failed steps, a run's message), newest first, as the budget allows.

Each listing is diffed as it arrives and dropped: only what changed is kept in the `Cycle`. An
agent whose listing failed changes nothing; a 429 is the platform's budget, not an outage
(`Cycle.failed`). Agents seen for the first time that emit nothing (a baseline) may be written
ahead in chunks of `BASELINE_CHUNK` runs (the commit stage's `write_ahead`), so a first start
with 10,000 agents is not held in memory whole.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import datetime
from typing import Any

import structlog

from watcher.config.problems import WILDCARD
from watcher.cycle import Cycle, Memory, allowance, as_source_error
from watcher.diff import Change, diff_agent
from watcher.errors import SourceError
from watcher.events import EventType
from watcher.planner import HINTED, SWEPT, Cadence, Plan, Reason, plan
from watcher.redact import redact
from watcher.runs import Agent
from watcher.sources.base import Source, purpose
from watcher.sources.http import UNCHANGED, Unchanged

log = structlog.get_logger("watcher.poller")

BASELINE_CHUNK = 5000
"""Runs of a quiet baseline written per transaction, ahead of the poll's own commit."""

WriteAhead = Callable[[Cycle], bool]
"""Write the quiet baseline collected so far; False if the write failed."""


class ListingStage:
    def __init__(self, source: Source, memory: Memory, *, write_ahead: WriteAhead) -> None:
        self.source = source
        self.memory = memory
        self.write_ahead = write_ahead

    @property
    def cadence(self) -> Cadence:
        """How often agents are due: active ones every `poll_interval_active`; the others every
        `sweep_interval` where hints say what changed, else every `poll_interval`."""
        cfg = self.source.config
        idle = cfg.sweep_interval if self.memory.hinted else cfg.poll_interval
        slack = cfg.poll_interval_active / 2  # a tick a little early still counts
        return Cadence(active=cfg.poll_interval_active, idle=idle, slack=slack)

    async def first_round(self, cycle: Cycle) -> None:
        await self._list(cycle, first=True)

    async def second_round(self, cycle: Cycle) -> None:
        await self._list(cycle, first=False)

    async def _list(self, cycle: Cycle, *, first: bool) -> None:
        """List the runs of the agents the planner picks for this round, and diff each."""
        chosen = self._plan(cycle, first=first)
        _count(cycle, chosen)
        if not chosen.listings:
            return
        cycle.report.agents += len(chosen.listings)
        for label in ("runs", "sweep"):  # the metrics tell the sweep from the rest
            agents = [a for a, r in chosen.listings if (r is Reason.SWEEP) == (label == "sweep")]
            if agents:
                with purpose(label):
                    await self._diff_listings(cycle, agents)
        swept = [a.id for a, reason in chosen.listings if reason is Reason.SWEEP]
        if swept:
            self.memory.cursor = swept[-1]

    def _plan(self, cycle: Cycle, *, first: bool) -> Plan:
        """The round's listings. The first (the changed) leaves one listing of the cycle's
        allowance to the second when an agent is due there: however many hints move, the
        sweep — and a run in progress never listed — still goes on."""
        memory = self.memory
        rounds = HINTED if memory.hinted else SWEPT
        free = allowance(self.source, cycle)
        return plan(
            memory.fleet.tracks(memory.runs, after=memory.cursor),
            now=cycle.ts,
            allowance=None if free is None else free // self.source.listing_cost,
            cadence=self.cadence,
            reasons=rounds.first if first else rounds.second,
            fair=rounds.fair and not first,
            force=cycle.force,
            leave_for=rounds.second if first else (),
        )

    async def _diff_listings(self, cycle: Cycle, due: list[Agent]) -> None:
        wildcard_ok = WILDCARD in {a.id for a in due}
        async with contextlib.aclosing(self._answers(due)) as answers:
            async for agent, result in answers:
                if isinstance(result, SourceError):
                    cycle.failed(result)
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
            cycle.listed.append(WILDCARD)

    async def _answers(self, due: Sequence[Agent]) -> AsyncGenerator[tuple[Agent, Any], None]:
        """The source's answers, each a list of runs, UNCHANGED or a SourceError."""
        answered: set[str] = set()
        try:
            async for agent, result in self.source.fetch(due):
                answered.add(agent.id)
                if not isinstance(result, list | SourceError | Unchanged):
                    result = as_source_error(self.source.name, result, agent.id)
                yield agent, result
        except Exception as err:  # a bug in a source must not take the daemon down
            error = as_source_error(self.source.name, err)
            for agent in due:
                if agent.id not in answered:
                    yield agent, error

    def _diff(self, cycle: Cycle, agent: Agent, listing: list[Any]) -> None:
        """Keep what changed; an agent seen for the first time is its baseline: with its
        events when it has news, else recorded quietly (and written ahead in chunks)."""
        previous = self.memory.runs.get(agent.id)
        diff = diff_agent(
            previous,
            listing,
            now=cycle.now,
            source_kind=self.source.kind,
            since=self._news_since(cycle, agent),
        )
        if previous is None:
            name = agent.name or next((s.agent_name for s in listing if s.agent_name), None)
            agent = Agent(agent.id, name)
            if not diff.events:
                self._quiet(cycle, agent, diff.changes)
                return
            cycle.baselined.append(agent)
        cycle.events.extend(diff.events)
        cycle.changes.extend(diff.changes)

    def _news_since(self, cycle: Cycle, agent: Agent) -> datetime | None:
        """From when the runs of an agent recorded but never listed are news (`diff_agent`)."""
        fleet = self.memory.fleet
        member = fleet.members.get(agent.id)
        if member is not None and not member.listed:
            return member.since
        if fleet.wildcard and not cycle.first:
            return fleet.complete_at or self.memory.last_success  # an agent it just found
        return None

    def _quiet(self, cycle: Cycle, agent: Agent, changes: list[Change]) -> None:
        cycle.quiet.add(agent, changes)
        if len(cycle.quiet.changes) >= BASELINE_CHUNK and not self.write_ahead(cycle):
            cycle.abandoned = True

    async def enrich(self, cycle: Cycle) -> None:
        """Add what the platform can tell about each new finish (diagnostics, failed steps, a
        run's message), newest first, as far as the budget allows; the rest go without."""
        start, cycle.enriched = cycle.enriched, len(cycle.events)
        todo = [
            i for i in range(start, len(cycle.events))
            if cycle.events[i].type == EventType.RUN_FINISHED
        ]  # fmt: skip
        free = allowance(self.source, cycle)
        if free is not None:
            todo = todo[::-1][:free]
        if not todo:
            return

        async def one(index: int) -> None:
            event = cycle.events[index]
            try:
                cycle.events[index] = await self.source.enrich(event)
            except Exception as err:  # context is a bonus; the alert goes out without it
                log.warning("run details unavailable", source=self.source.name,
                            run_id=event.run_id, error=redact(str(err)))  # fmt: skip

        with purpose("enrich"):
            await asyncio.gather(*(one(i) for i in todo))


def _count(cycle: Cycle, chosen: Plan) -> None:
    """The report's tally: listings by why they were made, agents due but left, by why."""
    report = cycle.report
    for _, reason in chosen.listings:
        report.planned[reason] = report.planned.get(reason, 0) + 1
    for why, count in chosen.skipped.items():
        report.deferred[why] = report.deferred.get(why, 0) + count
