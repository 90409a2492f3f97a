"""The first stage of a poll: which agents there are, and which have news.

Where the platform gives change hints (Sequentum Cloud's agent listing, most recently active
first), they are read only as far as they changed, and whole every `sweep_interval`; an
agent whose hint moved is listed first (`watcher.planner`). Where it gives none, its agents are
read instead — every `poll_interval`, or every `sweep_interval` under a request limit — which
says nothing of runs: it only finds new agents, and under `agents = ["*"]` forgets the gone.

An agent that appears after the first poll is news from the last complete listing that did
not have it (see `watcher.fleet`). A failure here is the cycle's error; the listing of runs
goes on with the agents already known.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from watcher.cycle import Cycle, Memory, as_source_error
from watcher.runs import Agent
from watcher.sources.base import Hints, Source, purpose

log = structlog.get_logger("watcher.poller")


class DiscoveryStage:
    def __init__(self, source: Source, memory: Memory) -> None:
        self.source = source
        self.memory = memory
        self._agents_at = float("-inf")
        self._agents_listed: datetime | None = None
        """When this process last read the agent listing of a source without hints."""

    async def discover(self, cycle: Cycle) -> None:
        """The platform's change hints, or its agents where it gives none (when they are
        due, or for `watcher once`)."""
        try:
            with purpose("hints"):
                if self.source.config.use_hints and self.memory.hinted is not False:
                    await self._read_hints(cycle)
                elif cycle.force or self._agents_due(cycle):
                    await self._read_agents(cycle)
        except Exception as err:
            cycle.failed(as_source_error(self.source.name, err))

    def _agents_due(self, cycle: Cycle) -> bool:
        cfg = self.source.config
        every = cfg.poll_interval if self.source.budget.unlimited else cfg.sweep_interval
        return cycle.ts - self._agents_at >= every - 1

    async def _read_agents(self, cycle: Cycle) -> None:
        fleet = self.memory.fleet
        listing = await self.source.hints(None, complete=True) if fleet.wildcard else None
        if listing is None:  # a platform without a listing of its agents: as configured
            agents, whole = await self.source.agents(), True
        else:  # one whose hints are unusable: its whole listing, for the agents alone
            agents, whole = [agent for agent, _ in listing.agents], listing.whole
        if fleet.wildcard and self.memory.hinted is not None and whole:
            fleet.forget(a.id for a in agents)
        self._adopt(cycle, agents)

    def _adopt(self, cycle: Cycle, agents: list[Agent]) -> None:
        """Take a complete agent listing of a source without hints: an agent that appeared
        after the first poll is news from the last listing that did not have it."""
        fleet = self.memory.fleet
        since = None
        if fleet.wildcard and not cycle.first:
            since = self._agents_listed or self.memory.last_success
        cycle.record(fleet.adopt(agents, now=cycle.now, since=since))
        self._agents_listed = cycle.now
        self._agents_at = cycle.ts

    async def _read_hints(self, cycle: Cycle) -> None:
        fleet = self.memory.fleet
        hints = await self.source.hints(fleet.watermark, complete=self._complete_due(cycle))
        if hints is None:  # a platform without hints: its agents, then, from now on
            self.memory.hinted = False
            self._adopt(cycle, await self.source.agents())
            return
        since = fleet.complete_at or self.memory.last_success
        cycle.record(fleet.observe(hints.agents, now=cycle.now, since=since, first=cycle.first))
        if hints.complete:
            self._took_complete(cycle, hints)
        cycle.hinted = bool(self.memory.hinted)

    def _complete_due(self, cycle: Cycle) -> bool:
        """Read the whole listing: at the first poll, and every `sweep_interval` after."""
        fleet = self.memory.fleet
        return (
            not fleet
            or fleet.complete_at is None
            or (cycle.now - fleet.complete_at).total_seconds() >= self.source.config.sweep_interval
        )

    def _took_complete(self, cycle: Cycle, hints: Hints) -> None:
        """A whole listing: under `agents = ["*"]` an agent missing from it is gone (when it
        had every agent the platform counted); and it tells whether the platform's hints are
        usable at all."""
        fleet = self.memory.fleet
        fleet.complete_at = cycle.now
        if fleet.wildcard and not hints.whole:
            log.info("the agent listing came short of the total it gave: no agent is "
                     "forgotten on its word", source=self.source.name,
                     agents=len(hints.agents))  # fmt: skip
        elif fleet.wildcard:
            for agent_id in fleet.forget(a.id for a, _ in hints.agents):
                log.info("agent no longer listed; no longer watched", source=self.source.name,
                         agent_id=agent_id)  # fmt: skip
        self._note_usable(any(hint.last_activity is not None for _, hint in hints.agents))

    def _note_usable(self, usable: bool) -> None:
        """Say once when hints turn out unusable (every agent is swept then), or usable
        again."""
        hinted = self.memory.hinted
        if usable != hinted and (hinted is not None or not usable):
            if usable:
                log.info("change hints available again", source=self.source.name)
            else:
                log.warning("the platform gives no change hints (no lastActivity); every "
                            "agent is swept, as the request budget allows",
                            source=self.source.name)  # fmt: skip
        self.memory.hinted = usable
