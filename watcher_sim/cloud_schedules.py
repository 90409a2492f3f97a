"""The schedules of the simulated Sequentum Cloud's agents (the vendor client's schedule API).

A schedule recurs RunEvery N minutes/hours/days/weeks, by CRON in its time zone, or RunOnce
(`watcher_sim.schedules.Recurrence`). Whenever `World.step()` passes its nextRunTime, an enabled
schedule starts a run — Skipped when the agent is archived (seed 001) — and nextRunTime moves
on; a schedule scripted with `fires=False` starts nothing, as one that silently failed to fire.
`World` takes these methods from `AgentSchedules`; `watcher_sim.cloud_agents` and
`watcher_sim.cloud_analytics` serve them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from watcher_sim.model import SimAgent, SimRun, SimSchedule
from watcher_sim.schedules import Recurrence


class AgentSchedules:
    """Agent schedules, for `World`, which provides the agents (`agent()`), the clock, id
    counters (`_claim`), runs (`begin_run`, `_random_fate`) and its queue of due jobs
    (`_due_at`)."""

    schedules: dict[int, SimSchedule]
    agents: dict[int, SimAgent]
    now: Callable[[], datetime]
    agent: Callable[[int], SimAgent]
    begin_run: Callable[..., SimRun]
    _claim: Callable[[str, int | None], int]
    _random_fate: Callable[[], str]
    _due_at: Callable[..., None]

    def agent_schedules(self, agent_id: int) -> list[SimSchedule]:
        """The agent's schedules, oldest first."""
        agent = self.agent(agent_id)
        return [s for s in self.schedules.values() if s.configId == agent.id]

    def add_schedule(
        self,
        agent_id: int,
        *,
        every: timedelta | None = None,
        cron: str | None = None,
        start: datetime | None = None,
        timezone: str = "UTC",
        enabled: bool = True,
        fires: bool = True,
        name: str | None = None,
        fate: str | None = None,
    ) -> SimSchedule:
        """Give the agent a schedule: RunEvery `every` (first at `start`, default one interval
        from now), CRON `cron` (five fields, in `timezone`, from `start` or now), or RunOnce at
        `start`. Whenever `step()` passes its nextRunTime an enabled schedule starts a run that
        takes the path `fate` (random when None) — a Skipped run if the agent is archived —
        and nextRunTime moves on. With `fires` False it starts nothing, as a schedule that
        silently failed to fire: only nextRunTime moves on."""
        agent = self.agent(agent_id)
        now = self.now()
        if start is None and every is None and cron is None:
            raise ValueError("a RunOnce schedule needs its `start`")
        first = start or (now + every if every is not None else now)
        recurrence = Recurrence(first, every, cron, timezone)
        schedule = SimSchedule(
            id=self._claim("_next_schedule_id", None),
            configId=agent.id,
            name=name or f"{agent.name} schedule",
            recurrence=recurrence,
            nextRunTime=recurrence.first(),
            isEnabled=enabled,
            created=now,
            updated=now,
            fires=fires,
            fate=fate,
        )
        self.schedules[schedule.id] = schedule
        self._schedule_fire(schedule)
        return schedule

    def _schedule_fire(self, schedule: SimSchedule) -> None:
        if schedule.nextRunTime is not None:
            self._due_at(schedule.nextRunTime, "schedule", schedule.configId, schedule.id)

    def _fire(self, schedule_id: int, due: datetime) -> None:
        """A schedule's nextRunTime has come: start its run (unless it is disabled or does not
        fire) and move nextRunTime on."""
        schedule = self.schedules.get(schedule_id)
        agent = self.agents.get(schedule.configId) if schedule is not None else None
        if schedule is None or agent is None or schedule.nextRunTime != due:
            return  # removed, or rescheduled since
        if schedule.isEnabled and schedule.fires:
            fate = "skipped" if agent.archived else schedule.fate or self._random_fate()
            self.begin_run(agent, due, fate).schedule_id = schedule.id
        schedule.nextRunTime = schedule.recurrence.next_after(due)
        self._schedule_fire(schedule)
