"""The agents one source watches, as its poller knows them between polls.

Each `Member` holds the agent's change hint as of its last listing (kept in the state file),
the hint read most recently, whether its runs were ever listed — an agent recorded from the
platform's agent listing but not listed yet keeps `since`, from when its runs are news — and
when this process last listed it. From these the planner's `Track`s are made.

When the runs of an agent recorded but not yet listed are news from (`since`, see
`diff_agent`): for the agents found at a source's first poll, and those added to the config
later, from the moment they were recorded — the runs that finished after the baseline began
(the history before it is recorded quietly); for an agent that appears later under
`agents = ["*"]`, from the last complete agent listing that did not have it (this process's,
or the last successful poll before a restart). The same for sources without hints: an agent's
first listing may come late (the budget, an error), and what finished meanwhile is news.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from watcher.config.problems import WILDCARD
from watcher.planner import Track
from watcher.runs import Agent, Hint, Phase, RunState
from watcher.runstore import AgentRecord


@dataclass(slots=True)
class Member:
    agent: Agent
    hint: Hint | None = None
    """Its hint when its runs were last listed (or when it was recorded)."""
    current: Hint | None = None
    """Its hint as last read."""
    listed: bool = False
    since: datetime | None = None
    listed_at: float | None = None
    recorded_at: datetime | None = None

    @property
    def changed(self) -> bool:
        return self.current is not None and self.current != self.hint

    def record(self) -> AgentRecord:
        return AgentRecord(self.agent.id, self.agent.name, self.hint, self.listed, self.since)

    def track(self, *, active: bool) -> Track:
        """The planner's view of it (which lists a change whose run settled — a finish,
        likely to alert — first, then the oldest change)."""
        current, changed = self.current, self.changed
        changed_at = None
        if changed and current is not None and current.last_activity:
            changed_at = current.last_activity.timestamp()
        return Track(
            self.agent,
            self.listed_at,
            active,
            changed,
            settled=changed and current is not None and not current.active,
            changed_at=changed_at,
        )


class Fleet:
    def __init__(self, records: Mapping[str, AgentRecord], *, wildcard: bool) -> None:
        self.wildcard = wildcard
        self.members: dict[str, Member] = {
            r.id: Member(
                Agent(r.id, r.name), r.hint, r.hint, r.listed, r.since, None, r.recorded_at
            )
            for r in records.values()
        }
        self.complete_at: datetime | None = None
        """When this process last read the whole agent listing."""

    def __len__(self) -> int:
        return len(self.members)

    @property
    def watermark(self) -> datetime | None:
        """The newest activity any agent's hint has shown: a later read need go no further
        down the listing than this."""
        moments = [
            m.current.last_activity
            for m in self.members.values()
            if m.current is not None and m.current.last_activity is not None
        ]
        return max(moments, default=None)

    def observe(
        self,
        entries: Iterable[tuple[Agent, Hint]],
        *,
        now: datetime,
        since: datetime | None,
        first: bool,
    ) -> list[AgentRecord]:
        """Take what an agent listing said. Agents not known yet are recorded — news from
        `since` when they appeared after the first poll of a wildcard source, else from `now`
        — and returned, to be written."""
        new: list[AgentRecord] = []
        for agent, hint in entries:
            member = self.members.get(agent.id)
            if member is not None:
                member.current = hint
                if agent.name and agent.name != member.agent.name:
                    member.agent = agent
                continue
            if self.wildcard and not first:
                member = Member(agent, None, hint, since=since, recorded_at=now)  # changed
            else:
                member = Member(agent, hint, hint, since=now, recorded_at=now)
            self.members[agent.id] = member
            new.append(member.record())
        return new

    def adopt(
        self, agents: Iterable[Agent], *, now: datetime, since: datetime | None = None
    ) -> list[AgentRecord]:
        """Take the agents of a source without hints: new ones are listed as soon as the
        budget allows; what finished before `since` (default `now`) is their history,
        recorded quietly — however late their first listing comes."""
        new: list[AgentRecord] = []
        for agent in agents:
            member = self.members.get(agent.id)
            if member is None:
                member = Member(agent, since=since or now, recorded_at=now)
                self.members[agent.id] = member
                new.append(member.record())
            elif agent.name and agent.name != member.agent.name:
                member.agent = agent
        return new

    def forget(self, keep: Iterable[str]) -> list[str]:
        """Stop watching agents a complete listing no longer has; return their ids."""
        keep = set(keep)
        gone = [agent_id for agent_id in self.members if agent_id not in keep]
        for agent_id in gone:
            del self.members[agent_id]
        return gone

    def listed(self, agent_id: str, ts: float) -> AgentRecord | None:
        """Its runs were listed (and committed): returns its record when that changed it."""
        member = self.members.get(agent_id)
        if member is None:
            return None
        member.listed_at = ts
        if member.listed and member.hint == member.current:
            return None
        member.listed, member.since = True, None
        if member.current is not None:
            member.hint = member.current
        return member.record()

    def tracks(
        self, runs: Mapping[str, Mapping[str, RunState]], *, after: str | None
    ) -> list[Track]:
        """The planner's view, in sweep order: by agent id, starting after `after` (where
        the last sweep stopped), so that successive sweeps go round every agent."""
        ids = sorted(self.members)
        if after is not None:
            ids = [i for i in ids if i > after] + [i for i in ids if i <= after]
        return [self.members[i].track(active=self._active(i, runs)) for i in ids]

    def _active(self, agent_id: str, runs: Mapping[str, Mapping[str, RunState]]) -> bool:
        """Has the agent a run in progress: as its runs were last listed, or — never listed —
        as its hint says."""
        if agent_id == WILDCARD:  # one listing for all (automation runs): active if any is
            return any(_running(r) for r in runs.values())
        if agent_id in runs:
            return _running(runs[agent_id])
        current = self.members[agent_id].current
        return current is not None and current.active


def _running(runs: Mapping[str, RunState]) -> bool:
    return any(st.phase is not Phase.FINISHED for st in runs.values())
