"""The job schedules of the simulated Agent Control Center (seed 004, "Get job schedules" …).

A schedule is a cron expression in a time zone; whenever the world's clock passes its
nextRunTime, `step()` starts a job of the agent (its runs carry the schedule's id in
`agentJobScheduleId`) and nextRunTime moves on. A disabled schedule, or one scripted with
`fires=False` (a schedule that silently failed to fire), starts nothing. `AccWorld` takes these
methods from `JobSchedules`; `watcher_sim.acc` serves them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from watcher_sim.acc_model import AccJob, AccRun, AccSchedule
from watcher_sim.model import SimNotFound
from watcher_sim.schedules import Recurrence
from watcher_sim.statuses import AccJobStatus, AccScheduleStatus
from watcher_sim.timeline import Timeline, random_uuid

if TYPE_CHECKING:
    from watcher_sim.model import Clock


class JobSchedules:
    """Job schedules, for `AccWorld`, which provides the agents (`agent()`), runs and jobs
    (`start_job()`), the clock, the random generator and the timeline."""

    schedules: dict[str, AccSchedule]
    runs: dict[str, AccRun]
    jobs: dict[str, AccJob]
    timeline: Timeline
    rng: random.Random
    now: Clock

    # ----------------------------------------------------------------- lookups

    def schedule(self, schedule_id: str) -> AccSchedule:
        try:
            return self.schedules[schedule_id.lower()]
        except KeyError:
            raise SimNotFound(f"Job schedule {schedule_id} not found.") from None

    def agent_schedules(self, agent_id: str) -> list[AccSchedule]:
        """The agent's schedules, oldest first."""
        guid = self.agent(agent_id).agentId
        return [s for s in self.schedules.values() if s.agentId == guid]

    def schedule_status(self, schedule: AccSchedule) -> AccScheduleStatus:
        """Waiting until it started a job; then Running, Succeeded or Failed as that job."""
        job = self.jobs.get(schedule.job_id or "")
        if job is None:
            return AccScheduleStatus.WAITING
        if job.status == AccJobStatus.SUCCEEDED:
            return AccScheduleStatus.SUCCEEDED
        if job.status in (AccJobStatus.FAILURE, AccJobStatus.FAILED):
            return AccScheduleStatus.FAILED
        return AccScheduleStatus.RUNNING

    # ---------------------------------------------------------------- changes

    def add_schedule(
        self,
        agent_id: str,
        cron: str,
        *,
        time_zone: str = "UTC",
        start: datetime | None = None,
        enabled: bool = True,
        fires: bool = True,
        fates: Iterable[str] = ("success",),
        schedule_id: str | None = None,
        **fields: object,
    ) -> AccSchedule:
        """Add a job schedule, or replace the one with `schedule_id` (what
        `POST api/job/{agentId}/schedule` does): it fires at the times `cron` names in
        `time_zone` (an IANA name) from `start` (default now) on, each time starting a job
        whose runs end as `fates` say. `fields` set other `AccSchedule` fields (sessionId,
        inputParameters, logLevel, isWindowless). Raises ValueError for a bad cron or zone."""
        agent = self.agent(agent_id)
        recurrence = Recurrence(start or self.now(), cron=cron, timezone=time_zone)
        sid = (schedule_id or random_uuid(self.rng)).lower()
        old = self.schedules.get(sid)
        schedule = AccSchedule(
            sid,
            agent.agentId,
            recurrence,
            recurrence.first(),
            isEnabled=enabled,
            fires=fires,
            fates=tuple(fates),
            lastRunTime=old.lastRunTime if old is not None else None,
            job_id=old.job_id if old is not None else None,
        )
        for name, value in fields.items():
            if name not in AccSchedule.__slots__:
                raise TypeError(f"AccSchedule has no field {name!r}")
            setattr(schedule, name, value)
        self.schedules[sid] = schedule
        self._plan_fire(schedule)
        return schedule

    def remove_schedule(self, schedule_id: str) -> None:
        del self.schedules[self.schedule(schedule_id).scheduleId]

    def remove_agent_schedules(self, agent_id: str) -> None:
        for schedule in self.agent_schedules(agent_id):
            del self.schedules[schedule.scheduleId]

    def start_schedule(self, schedule_id: str) -> AccJob:
        """Start a schedule's job now, out of turn (`POST api/job/schedule/{id}/start`)."""
        schedule = self.schedule(schedule_id)
        return self._start(schedule, self.now())

    # ---------------------------------------------------------------- internals

    def _plan_fire(self, schedule: AccSchedule) -> None:
        due = schedule.nextRunTime
        if due is None:
            return

        def fire(when: datetime) -> None:
            if self.schedules.get(schedule.scheduleId) is not schedule:
                return  # removed or replaced since
            if schedule.nextRunTime != when:
                return
            if schedule.isEnabled and schedule.fires:
                self._start(schedule, when)
            schedule.nextRunTime = schedule.recurrence.next_after(when)
            self._plan_fire(schedule)

        self.timeline.at(due, fire)

    def _start(self, schedule: AccSchedule, at: datetime) -> AccJob:
        job = self.start_job(schedule.agentId, schedule.fates, at=at)
        for run_id in job.run_ids:
            self.runs[run_id].agentJobScheduleId = schedule.scheduleId
        schedule.job_id, schedule.lastRunTime = job.agentJobHistoryId, at
        return job
