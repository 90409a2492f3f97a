"""The rules, applied to one source each cycle: stuck runs, anomalies, missed schedules.

The poller hands the judge what the cycle saw (its new events, its run changes) before it
commits; the judge answers with events — `run.stuck`, `run.anomaly`,
`agent.missed_schedule` — committed in the same transaction. Nothing is reported twice, across
restarts too: every finding has a stable event id (a replay is ignored by the store), and what
was already reported is looked up rather than written again each cycle.

A schedule slot is judged only once the agent's runs are known past the slot's grace
(`AgentView.known_at`) — listed after it, or listed before with a change hint read after it
that has not moved since — so a start the budget has not got round to listing yet is never
taken for a miss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from watcher.codec import iso
from watcher.config.rules import RuleConfig
from watcher.diff import Change
from watcher.durations import duration_of
from watcher.events import Event, EventType, event_id, with_data
from watcher.rules import RuleBook, Success, anomalies, slots, started_for, stuck
from watcher.runs import Phase, RunSnapshot
from watcher.standing import Standing
from watcher.store import Store

LOOKBACK = timedelta(days=1)
"""How far back, at most, schedule slots are judged after a start (a downtime's misses)."""


@dataclass(slots=True)
class ActiveRun:
    agent_id: str
    run_id: str
    attempt: int
    started: datetime
    """When it started (or was first seen, when the platform gave no start)."""
    status: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class AgentView:
    """What the judge needs to know of an agent."""

    name: str | None
    recorded_at: datetime | None
    """When watcher began watching it: no slot before is judged."""
    known_at: float | None
    """Up to when its runs are known: when they were last listed, or later, when the change
    hints read then showed it had not moved since. A slot is judged once its grace ended
    before this."""

    def known_until(self, now: datetime) -> datetime | None:
        """Up to when its runs are known, as a moment no later than `now`."""
        if self.known_at is None:
            return None
        return min(now, datetime.fromtimestamp(self.known_at, tz=now.tzinfo))


class Judge:
    def __init__(
        self,
        *,
        source: str,
        kind: str,
        book: RuleBook,
        store: Store,
        run_url: Callable[[str, str, str | None], str | None],
        schedule_refresh: float = 600.0,
    ) -> None:
        self.source = source
        self.schedule_refresh = schedule_refresh
        self._schedules_at: datetime | None = None
        self.kind = kind
        self.book = book
        self.store = store
        self.run_url = run_url
        self.active: dict[tuple[str, str], ActiveRun] = {}
        self._stuck = store.reported(source, EventType.RUN_STUCK)
        self._checked: dict[str, datetime] = {}  # schedule slots judged up to, per agent
        self._seen: dict[str, dict[str, RunSnapshot]] = {}
        """The runs this cycle writes, per agent and run id."""
        if book:
            for agent_id, run_id, attempt, started, status, url in store.active_runs(source):
                self.active[(agent_id, run_id)] = ActiveRun(
                    agent_id, run_id, attempt, started, status, url
                )

    def judge(
        self,
        *,
        now: datetime,
        events: list[Event],
        changes: Iterable[Change],
        standings: Mapping[str, Standing],
        agents: Mapping[str, AgentView],
    ) -> list[Event]:
        """What this cycle's runs tell that their statuses do not."""
        if not self.book:
            return []
        changes = list(changes)
        self.follow(changes, now)
        self._seen = {}
        for change in changes:
            snap = change.snapshot
            self._seen.setdefault(snap.agent_id, {})[snap.run_id] = snap
        found: list[Event] = []
        for event in events:
            if event.type == EventType.RUN_FINISHED:
                found.extend(self._anomalies(event, standings, agents))
        found.extend(self._stuck_runs(now, standings, agents))
        for agent_id, view in agents.items():
            rule = self.book.rule_for(self.source, agent_id, view.name)
            if rule is not None and rule.schedule is not None:
                found.extend(self._missed(rule, agent_id, view, now))
        found.extend(self._missed_platform_starts(now, agents))
        return found

    # --- the platforms' own schedules ---------------------------------------------------------

    def scheduled_agents(self, now: datetime, agents: Mapping[str, AgentView]) -> list[str]:
        """The agents whose platform schedules are due to be read again (none, mostly)."""
        if self._schedules_at is not None and (
            (now - self._schedules_at).total_seconds() < self.schedule_refresh
        ):
            return []
        wanted = []
        for agent_id, view in agents.items():
            rule = self.book.rule_for(self.source, agent_id, view.name)
            if rule is not None and rule.platform_schedules:
                wanted.append(agent_id)
        return wanted

    def expect(self, starts: Iterable[tuple[str, datetime, str]], now: datetime) -> None:
        """The starts the platform's schedules announce now, to be judged when they are due."""
        self.store.expect(self.source, list(starts), now)
        self._schedules_at = now

    def _missed_platform_starts(
        self, now: datetime, agents: Mapping[str, AgentView]
    ) -> list[Event]:
        found = []
        for agent_id, at, schedule in self.store.expected(self.source, now):
            view = agents.get(agent_id)
            rule = self._rule(agent_id, agents)
            if view is None or rule is None:
                continue
            known = view.known_until(now)
            if known is None or at + timedelta(seconds=rule.grace) > known:
                continue  # not yet judged: its grace runs, or its runs are not known since
            eid = event_id(self.source, agent_id, EventType.AGENT_MISSED_SCHEDULE, iso(at))
            if not self.store.has_event(eid) and not self._started(agent_id, at, rule, now):
                found.append(
                    self._missed_event(
                        eid, now, agent_id, view, rule, at, f"platform schedule {schedule}"
                    )
                )
            self.store.judged(self.source, agent_id, at)
        return found

    def _rule(self, agent_id: str, agents: Mapping[str, AgentView]) -> RuleConfig | None:
        view = agents.get(agent_id)
        return self.book.rule_for(self.source, agent_id, view.name if view else None)

    # --- stuck runs -------------------------------------------------------------------------

    def follow(self, changes: Iterable[Change], now: datetime) -> None:
        """Keep the active runs and their starts up to date with what is written of runs —
        the cycle's changes and a first listing's quiet baseline alike: a run already running
        when watcher first sees it can be stuck too."""
        if not self.book:
            return
        for change in changes:
            snap, state = change.snapshot, change.state
            key = (snap.agent_id, snap.run_id)
            if state.phase is Phase.FINISHED:
                self.active.pop(key, None)
                continue
            known = self.active.get(key)
            started = snap.started_at or (known.started if known else now)
            self.active[key] = ActiveRun(
                snap.agent_id, snap.run_id, state.attempt, started, snap.status, snap.url
            )

    def _stuck_runs(
        self, now: datetime, standings: Mapping[str, Standing], agents: Mapping[str, AgentView]
    ) -> list[Event]:
        found = []
        for run in self.active.values():
            key = (run.agent_id, run.run_id, run.attempt)
            if key in self._stuck:
                continue
            rule = self._rule(run.agent_id, agents)
            if rule is None:
                continue
            standing = standings.get(run.agent_id)
            history: list[Success] = list(standing.successes) if standing else []
            limit = stuck(rule, run.started, now, history)
            if limit is None:
                continue
            self._stuck.add(key)
            took = (now - run.started).total_seconds()
            view = agents.get(run.agent_id)
            found.append(
                self._event(
                    EventType.RUN_STUCK,
                    now,
                    agent_id=run.agent_id,
                    name=view.name if view else None,
                    run_id=run.run_id,
                    attempt=run.attempt,
                    status=run.status,
                    url=run.url,
                    message=f"pending or running for {_human(took)}, past {limit.why}",
                    id_parts=(run.attempt,),
                    started_at=run.started,
                    rule=rule.name,
                    running_s=round(took),
                    limit_s=round(limit.seconds),
                    limit=limit.why,
                )
            )
        return found

    def was_stuck(self, agent_id: str, run_id: str, attempt: int) -> bool:
        """Was this run reported stuck (its finish then says how long it took)?"""
        return (agent_id, run_id, attempt) in self._stuck

    # --- anomalies ----------------------------------------------------------------------------

    def _anomalies(
        self, event: Event, standings: Mapping[str, Standing], agents: Mapping[str, AgentView]
    ) -> list[Event]:
        if not event.agent_id or event.outcome is None:
            return []
        rule = self._rule(event.agent_id, agents)
        if rule is None:
            return []
        standing = standings.get(event.agent_id)
        history = list(standing.successes) if standing else []
        counts = event.counts
        found = anomalies(
            rule,
            success=event.outcome.value == "success",
            records=counts.records if counts else None,
            errors=counts.errors if counts else None,
            history=history,
        )
        if not found:
            return []
        first = found[0]
        checks = [
            {"check": a.check, "value": a.value, "threshold": a.threshold, "history": a.history}
            for a in found
        ]
        data = with_data(
            event,
            rule=rule.name,
            check=first.check,
            value=first.value,
            threshold=first.threshold,
            history=first.history,
            checks=checks,
        )
        eid = event_id(
            self.source, event.agent_id, event.run_id, EventType.RUN_ANOMALY, event.attempt
        )
        said = "; ".join(_say(a) for a in found)
        return [replace(data, id=eid, type=EventType.RUN_ANOMALY, message=said)]

    # --- missed schedules ---------------------------------------------------------------------

    def _missed(
        self, rule: RuleConfig, agent_id: str, view: AgentView, now: datetime
    ) -> list[Event]:
        """The slots of `rule.schedule` whose grace ran out without a run starting."""
        known = view.known_until(now)
        if known is None:
            return []
        start = self._checked.get(agent_id)
        if start is None:
            start = max(view.recorded_at or now, now - LOOKBACK)
        until = known - timedelta(seconds=rule.grace)  # a slot whose grace ended by then
        found = []
        for slot in slots(rule, start, until):
            eid = event_id(self.source, agent_id, EventType.AGENT_MISSED_SCHEDULE, iso(slot))
            if self.store.has_event(eid) or self._started(agent_id, slot, rule, now):
                continue
            found.append(
                self._missed_event(
                    eid, now, agent_id, view, rule, slot, f"{rule.schedule} {rule.timezone}"
                )
            )
        if until > start:
            self._checked[agent_id] = until
        return found

    def _starts(self, agent_id: str, now: datetime) -> dict[str, datetime]:
        """When each run of the agent started (`watcher.rulestore.STARTED`): as written — and
        as this cycle writes them, for the slot may be judged in the very poll that first
        lists the run that started for it (back from a downtime, or a start late in the
        grace)."""
        starts = self.store.starts(self.source, agent_id)
        for run_id, snap in self._seen.get(agent_id, {}).items():
            # a Skipped run has only its end; a run new to this cycle is first seen now
            starts[run_id] = snap.started_at or snap.ended_at or starts.get(run_id) or now
        return starts

    def _started(self, agent_id: str, slot: datetime, rule: RuleConfig, now: datetime) -> bool:
        """Did a run of the agent start for `slot`?"""
        return started_for(slot, rule.grace, self._starts(agent_id, now).values())

    def _last_run(self, agent_id: str, now: datetime) -> RunSnapshot | None:
        """The run of the agent that started last: what a missed slot's alert shows."""
        starts = self._starts(agent_id, now)
        if not starts:
            return None
        run_id = max(starts, key=starts.__getitem__)
        seen = self._seen.get(agent_id, {}).get(run_id)
        return seen or self.store.run(self.source, agent_id, run_id)

    def _missed_event(
        self,
        eid: str,
        now: datetime,
        agent_id: str,
        view: AgentView,
        rule: RuleConfig,
        slot: datetime,
        schedule: str,
    ) -> Event:
        """The event of a missed slot, with the agent's last run and its link: when it last
        ran, and where to look."""
        last = self._last_run(agent_id, now)
        data: dict[str, Any] = {
            "rule": rule.name,
            "expected_at": iso(slot),
            "schedule": schedule,
            "grace_s": rule.grace,
            "last_run": None,
        }
        if last is not None:
            data["last_run"] = {
                "run_id": last.run_id,
                "status": last.status,
                "started_at": iso(last.started_at),
                "ended_at": iso(last.ended_at),
            }
        return Event(
            id=eid,
            type=EventType.AGENT_MISSED_SCHEDULE,
            ts=now,
            source=self.source,
            source_kind=self.kind,
            agent_id=agent_id,
            agent_name=view.name,
            message=f"no run started within {_human(rule.grace)} of {iso(slot)} ({schedule})",
            url=last.url if last is not None else None,
            data=tuple(sorted(data.items())),
        )

    def _event(
        self,
        type: EventType,
        now: datetime,
        *,
        agent_id: str,
        name: str | None,
        run_id: str | None,
        attempt: int,
        status: str | None,
        url: str | None,
        message: str,
        id_parts: tuple[object, ...],
        started_at: datetime,
        **data: Any,
    ) -> Event:
        return Event(
            id=event_id(self.source, agent_id, run_id, str(type), *id_parts),
            type=str(type),
            ts=now,
            source=self.source,
            source_kind=self.kind,
            agent_id=agent_id,
            agent_name=name,
            run_id=run_id,
            status=status,
            attempt=attempt,
            started_at=started_at,
            message=message,
            url=url,
            data=tuple(sorted(data.items())),
        )


def _say(anomaly: Any) -> str:
    what = {
        "min_records": "records",
        "records_drop": "records",
        "max_errors": "errors",
    }[anomaly.check]
    bound = "more than" if anomaly.check == "max_errors" else "below"
    text = f"{anomaly.value:,.0f} {what}, {bound} {anomaly.threshold:,.0f} ({anomaly.check})"
    return text + (f", the {anomaly.history}" if anomaly.history else "")


def _human(seconds: float) -> str:
    return duration_of(seconds)
