"""The world behind the simulated Sequentum Agent Control Center (seed 004).

Agents live at repository paths and have GUIDs; runs move through the run statuses 0–7 and
jobs (a set of runs started together) through the job statuses 0–5, which follow from their
runs: "In Progress With Failure" (2) as soon as one run failed while others still run. Tests
script a world directly (`add_agent`, `add_run`, `set_status`, `set_job_status`,
`retry_run`, `add_schedule` from `acc_schedules`, `inject`); the demo lets `step()` move
planned runs along by the injected clock. `watcher_sim.acc` serves a world over HTTP.

Deterministic: the seed, the clock readings and the sequence of calls fix every id, time,
count and message.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from watcher_sim.acc_model import (
    DELIVERY,
    FAILED,
    FAILURE,
    JOB_FAILED,
    JOB_FAILURE,
    JOB_IN_PROGRESS,
    JOB_SUCCEEDED,
    JOB_TOTALS,
    JOB_WITH_FAILURE,
    NEVER_RUN,
    RUNNING,
    STARTING,
    STOPPED,
    SUCCEEDED,
    AccAgent,
    AccJob,
    AccRun,
    AccSchedule,
)
from watcher_sim.acc_schedules import JobSchedules
from watcher_sim.faults import SimServer
from watcher_sim.model import Clock, SimConflict, SimNotFound, utc_now
from watcher_sim.statuses import (
    ACC_DEFAULT_RETRY_METHOD,
    ACC_JOB_FINISHED,
    ACC_RETRY_METHODS,
    ACC_RUN_BAD,
    ACC_RUN_FINISHED,
    ACC_RUN_NAMES,
)
from watcher_sim.timeline import Timeline, random_uuid

FATES = ("success", "failed", "failure", "stopped")
"""The paths a started run can take: it ends Succeeded (4), Failed (5), Failure (7), Stopped (6)."""

FAILURE_MESSAGES = (
    "Timeout waiting for page to load",
    "Proxy connection refused",
    "Selector not found: div.price",
)

_EPOCH = datetime.min.replace(tzinfo=UTC)
_RUN_COUNTS = (
    "successActionCount", "dynamicSuccessActionCount", "volume", "pageLoadCount",
    "requestCount", "downloadCount", "errors", "dataCount", "deliveryCount",
)  # fmt: skip


class AccWorld(JobSchedules, SimServer):
    """An Agent Control Center in memory, scriptable by tests and driven by a clock."""

    def __init__(
        self,
        *,
        now: Clock | None = None,
        seed: int = 0,
        tick: float = 1.5,
        tokens: Iterable[str] = ("sim-acc-token",),
        utc_offset: timedelta = timedelta(hours=10),
        latency: float = 0.0,
        rate_limit: int | None = None,
        rate_window: float = 60.0,
    ) -> None:
        super().__init__(
            now=now or utc_now, latency=latency, rate_limit=rate_limit, rate_window=rate_window
        )
        self.rng = random.Random(seed)
        self.tick = tick
        self.tokens: set[str] = set(tokens)
        self.utc_offset = utc_offset  # times are served in this offset, like the seed's +10:00
        #: False: the history listing leaves statusMessage out (only GET /api/run/{id} has it).
        self.history_messages = True
        self.agents: dict[str, AccAgent] = {}  # by lower-case GUID
        self.runs: dict[str, AccRun] = {}
        self.jobs: dict[str, AccJob] = {}
        self.schedules: dict[str, AccSchedule] = {}
        self.timeline = Timeline()

    # ----------------------------------------------------------------- lookups

    def agent(self, agent_id: str) -> AccAgent:
        try:
            return self.agents[agent_id.lower()]
        except KeyError:
            raise SimNotFound(f"Agent {agent_id} not found.") from None

    def agent_at(self, path: str) -> AccAgent:
        """The agent at a repository path (case-insensitive, surrounding "/" ignored)."""
        wanted = path.strip("/").lower()
        for agent in self.agents.values():
            if agent.path.lower() == wanted:
                return agent
        raise SimNotFound(f"Agent {path} not found.")

    def run(self, run_id: str) -> AccRun:
        try:
            return self.runs[run_id.lower()]
        except KeyError:
            raise SimNotFound(f"Agent run {run_id} not found.") from None

    def job(self, job_id: str) -> AccJob:
        try:
            return self.jobs[job_id.lower()]
        except KeyError:
            raise SimNotFound(f"Job run {job_id} not found.") from None

    def history(self, agent_id: str, count: int | None = None) -> list[AccRun]:
        """The agent's runs, newest first, at most `count`."""
        guid = self.agent(agent_id).agentId
        runs = [r for r in self.runs.values() if r.agentId == guid]
        runs.sort(key=lambda r: (r.created or _EPOCH, r.agentRunHistoryId), reverse=True)
        return runs[:count] if count is not None else runs

    def job_history(self, agent_id: str, count: int | None = None) -> list[AccJob]:
        guid = self.agent(agent_id).agentId
        jobs = sorted((j for j in self.jobs.values() if j.agentId == guid), key=lambda j: -j.runId)
        return jobs[:count] if count is not None else jobs

    def job_runs(self, agent_id: str, number: int) -> list[AccRun]:
        """The runs started by the agent's job run number `number`, newest first."""
        return [r for r in self.history(agent_id) if r.runId == number and r.job_id]

    # ---------------------------------------------------------------- building

    def add_agent(
        self, path: str, *, agent_id: str | None = None, name: str | None = None, **fields: Any
    ) -> AccAgent:
        """Add an agent at repository `path`; its name defaults to the path's last part."""
        path = path.strip("/")
        guid = (agent_id or random_uuid(self.rng)).lower()
        if guid in self.agents:
            raise ValueError(f"agent {guid} already exists")
        agent = AccAgent(guid, name or path.rsplit("/", 1)[-1], random_uuid(self.rng), path=path)
        _apply(agent, fields)
        self.agents[guid] = agent
        return agent

    def replace_agent(self, path: str) -> AccAgent:
        """Delete the agent at `path` and create a new one there (a new GUID, no history): the
        old GUID now answers 404, the path resolves to the new one."""
        old = self.agent_at(path)
        del self.agents[old.agentId]
        return self.add_agent(old.path, name=old.name)

    def add_run(
        self,
        agent_id: str,
        status: int = STARTING,
        *,
        run_id: str | None = None,
        message: str | None = None,
        **fields: Any,
    ) -> AccRun:
        """Add a run in `status` now (times, counts and message follow); `fields` override any
        `AccRun` field."""
        run = self._new_run(self.agent(agent_id), self.now(), run_id)
        self._enter(run, status, self.now(), message)
        _apply(run, fields)
        return run

    def set_status(self, run_id: str, status: int, message: str | None = None) -> AccRun:
        """Put a run in `status` now; cancels whatever the autopilot planned for it."""
        run = self.run(run_id)
        run.plan, run.version = [], run.version + 1
        self._enter(run, status, self.now(), message)
        return run

    def start_run(
        self,
        agent_id: str,
        fate: str | None = None,
        *,
        running_ticks: float = 2,
        job: AccJob | None = None,
        at: datetime | None = None,
    ) -> AccRun:
        """What `POST api/agent/{id}/cluster/start` does: a run Starting now (or `at`), then
        moved along by `step()` to the end its `fate` names (random when None): "success"
        Starting → Running → Delivery → Succeeded; "failed", "failure", "stopped" Starting →
        Running → Failed (5), Failure (7), Stopped (6). Running lasts `running_ticks` ticks."""
        now = at or self.now()
        run = self._new_run(self.agent(agent_id), now)
        if job is not None:
            run.runId, run.job_id = job.runId, job.agentJobHistoryId
            job.run_ids.append(run.agentRunHistoryId)
        t = self.tick
        end = {"success": SUCCEEDED, "failed": FAILED, "failure": FAILURE, "stopped": STOPPED}
        fate = fate or self.rng.choice(FATES)
        if fate not in end:
            raise ValueError(f"unknown fate {fate!r}; one of {FATES}")
        run.plan = [(RUNNING, running_ticks * t)]
        run.plan += [(DELIVERY, t), (SUCCEEDED, None)] if fate == "success" else [(end[fate], None)]
        self._enter(run, STARTING, now)
        self._schedule(run, now + timedelta(seconds=t))
        return run

    def restart_run(self, run_id: str) -> AccRun:
        """Restart a finished run in place (restart or retry): Starting again, then Succeeded."""
        run = self.run(run_id)
        if run.status not in ACC_RUN_FINISHED:
            raise SimConflict(f"Agent run {run_id} is still running.")
        now = self.now()
        run.version += 1
        run.plan = [(RUNNING, self.tick), (DELIVERY, self.tick), (SUCCEEDED, None)]
        run.endTime = run.runTime = None
        self._enter(run, STARTING, now)
        self._schedule(run, now + timedelta(seconds=self.tick))
        return run

    def retry_run(self, run_id: str, method: str = ACC_DEFAULT_RETRY_METHOD) -> AccRun:
        """What `POST api/run/{id}/retry?RunMethod=…` does to a finished run (seed 004):
        "New" starts a new run of the agent with the same input parameters (the old run
        stays as it ended); "Restart" runs it again in place from nothing; the Continue…
        methods resume it in place, keeping what it had extracted. The run then succeeds."""
        if method not in ACC_RETRY_METHODS:
            raise ValueError(f"unknown RunMethod {method!r}; one of {sorted(ACC_RETRY_METHODS)}")
        run = self.run(run_id)
        if run.status not in ACC_RUN_FINISHED:
            raise SimConflict(f"Agent run {run_id} is still running.")
        if method == "New":
            new = self.start_run(run.agentId, "success")
            new.inputParameters = run.inputParameters
            return new
        if method == "Restart":
            for name in _RUN_COUNTS:
                setattr(run, name, 0)
        return self.restart_run(run_id)

    # -------------------------------------------------------------------- jobs

    def start_job(
        self, agent_id: str, fates: Iterable[str] = ("success",), *, at: datetime | None = None
    ) -> AccJob:
        """What `POST api/job/{id}/start` does: a job run In Progress with one run per fate,
        the n-th running n ticks (so ("failed", "success") warns before it ends)."""
        agent = self.agent(agent_id)
        job = self.add_job(agent.agentId, at=at)
        for i, fate in enumerate(fates):
            self.start_run(agent.agentId, fate, running_ticks=1 + i, job=job, at=at)
        self._derive(job, at or self.now())
        return job

    def add_job(
        self, agent_id: str, status: int = JOB_IN_PROGRESS, *, at: datetime | None = None
    ) -> AccJob:
        """A job run of the agent without runs of its own, in `status` (tests set it by hand)."""
        agent = self.agent(agent_id)
        agent.jobs_started += 1
        now = at or self.now()
        job = AccJob(random_uuid(self.rng), agent.agentId, agent.jobs_started, startTime=now)
        self.jobs[job.agentJobHistoryId] = job
        job.status = status
        return job

    def set_job_status(self, agent_id: str, status: int) -> AccJob:
        """What `POST api/job/{id}/status` does: set the status of the agent's latest job run."""
        jobs = self.job_history(agent_id, 1)
        if not jobs:
            raise SimNotFound(f"No job run for agent {agent_id}.")
        job = jobs[0]
        job.status, job.manual = status, True
        now = self.now()
        if status in ACC_JOB_FINISHED:
            job.endTime = job.endTime or now
        else:
            job.endTime = None
        return job

    def job_totals(self, job: AccJob) -> dict[str, int]:
        """The job's totals, summed over its runs."""
        runs = [self.runs[r] for r in job.run_ids if r in self.runs]
        totals = {k: sum(getattr(r, v) for r in runs) for k, v in JOB_TOTALS.items()}
        totals["completedRunCount"] = sum(1 for r in runs if r.status in ACC_RUN_FINISHED)
        totals["totalRunCount"] = len(runs)
        return totals

    # ------------------------------------------------------------------ autopilot

    def step(self) -> int:
        """Apply every planned transition and autopilot start due by the clock."""
        return self.timeline.run_due(self.now())

    def schedule_start(
        self, agent_id: str, at: datetime, fate: str | None = None, *, job: bool = False
    ) -> None:
        """Start a run (or a job of a failing and a succeeding run) of the agent at `at`, and
        then every `start_every` seconds if the agent has one."""

        def start(when: datetime) -> None:
            agent = self.agents.get(agent_id.lower())
            if agent is None:
                return
            busy = any(r.status not in ACC_RUN_FINISHED for r in self.history(agent.agentId))
            if not busy and job:
                self.start_job(agent.agentId, ("failed", "success"), at=when)
            elif not busy:
                self.start_run(agent.agentId, fate, at=when)
            if agent.start_every:
                later = when + timedelta(seconds=agent.start_every * self.rng.uniform(0.8, 1.2))
                self.schedule_start(agent_id, later, job=job)

        self.timeline.at(at, start)

    @classmethod
    def demo(
        cls, *, seed: int = 0, now: Clock | None = None, tick: float = 1.5, **kw: Any
    ) -> AccWorld:
        """A few agents with history; within ~6 ticks their first runs finish Succeeded,
        Failed (5), Stopped and Failure (7), and a job warns (one run failed, one running) and
        then ends in Failure. Later runs take random paths."""
        world = cls(now=now, seed=seed, tick=tick, **kw)
        start = world.now()
        for i, (path, fate) in enumerate(DEMO_AGENTS):
            agent = world.add_agent(path)
            for days in (3, 2, 1):
                world._past_run(agent, start - timedelta(days=days, minutes=7 * i))
            agent.start_every = world.rng.uniform(8, 12) * tick
            at = start + timedelta(seconds=(0.3 + 0.4 * i) * tick)
            world.schedule_start(agent.agentId, at, fate, job=fate == "job")
        return world

    # --------------------------------------------------------------- internals

    def _new_run(self, agent: AccAgent, at: datetime, run_id: str | None = None) -> AccRun:
        guid = (run_id or random_uuid(self.rng)).lower()
        if guid in self.runs:
            raise ValueError(f"run {guid} already exists")
        stamp = at.strftime("%Y_%m_%d-%I_%M_%S")
        run = AccRun(guid, agent.agentId, created=at, logPath=f"{agent.name}-{stamp}.log")
        run.final_pages = self.rng.randint(1, 60)
        run.final_data = self.rng.randint(1, 500)
        self.runs[guid] = run
        return run

    def _past_run(self, agent: AccAgent, at: datetime) -> AccRun:
        """A finished run from before the world started, for history."""
        run = self._new_run(agent, at)
        status = self.rng.choice((SUCCEEDED, SUCCEEDED, SUCCEEDED, FAILED, STOPPED))
        self._enter(run, STARTING, at)
        self._enter(run, status, at + timedelta(seconds=self.rng.uniform(5, 600)))
        return run

    def _schedule(self, run: AccRun, due: datetime) -> None:
        version = run.version

        def advance(when: datetime) -> None:
            if run.version != version or not run.plan:
                return  # changed by hand since
            status, dwell = run.plan.pop(0)
            self._enter(run, status, when)
            if run.plan and dwell is not None:
                self._schedule(run, when + timedelta(seconds=dwell))

        self.timeline.at(due, advance)

    def _enter(self, run: AccRun, status: int, at: datetime, message: str | None = None) -> None:
        """Move `run` to `status` at `at`: times, counts, message and log follow; the run's
        job (if any) derives its own status again."""
        run.status = status
        run.lastUpdated = at
        if status != NEVER_RUN and run.startTime is None:
            run.startTime = at
        name = ACC_RUN_NAMES.get(status, str(status))
        run.log.append(f"{at.isoformat()} INFO Status: {name}")
        if status == RUNNING:
            self._counts(run, 0.5)
        elif status in (DELIVERY, SUCCEEDED):
            self._counts(run, 1.0)
        if status in ACC_RUN_FINISHED:
            run.endTime = at
            run.runTime = max(0.0, (at - (run.startTime or at)).total_seconds())
            if status == SUCCEEDED:
                run.statusMessage = "Completed"
                run.deliveryCount = max(run.deliveryCount, 1)
            elif status == STOPPED:
                self._counts(run, 0.6)
                run.statusMessage = "Stopped"
            else:
                self._counts(run, 0.3)
                run.errors = max(run.errors, 1)
                run.statusMessage = self.rng.choice(FAILURE_MESSAGES)
                run.log.append(f"{at.isoformat()} ERROR {run.statusMessage}")
        else:
            run.endTime = run.runTime = None
        if message is not None:
            run.statusMessage = message
        if run.job_id is not None and run.job_id in self.jobs:
            self._derive(self.jobs[run.job_id], at)

    def _counts(self, run: AccRun, share: float) -> None:
        pages, data = round(run.final_pages * share), round(run.final_data * share)
        run.pageLoadCount = max(run.pageLoadCount, pages)
        run.requestCount = max(run.requestCount, pages * 3)
        run.successActionCount = max(run.successActionCount, pages)
        run.dataCount = max(run.dataCount, data)
        run.volume = max(run.volume, data * 25)

    def _derive(self, job: AccJob, at: datetime) -> None:
        """The job's status from its runs: In Progress, With Failure once one failed while
        others run; at the end Succeeded, Failed (all failed) or Failure (some failed)."""
        if job.manual:
            return
        runs = [self.runs[r] for r in job.run_ids if r in self.runs]
        bad = [r for r in runs if r.status in ACC_RUN_BAD]
        if any(r.status not in ACC_RUN_FINISHED for r in runs) or not runs:
            job.status = JOB_WITH_FAILURE if bad else JOB_IN_PROGRESS
            job.endTime = None
            return
        job.completedScheduleCount = job.totalScheduleCount
        job.endTime = at
        job.status = (
            JOB_SUCCEEDED if not bad else JOB_FAILED if len(bad) == len(runs) else JOB_FAILURE
        )


# (repository path, how its first run ends). "job": a job of a failing and a succeeding run.
DEMO_AGENTS: tuple[tuple[str, str], ...] = (
    ("sequentum/Demo/quick", "success"),
    ("sequentum/Demo/prices", "failed"),
    ("sequentum/Demo/news", "stopped"),
    ("sequentum/Demo/listings", "failure"),
    ("sequentum/Demo/catalog", "job"),
)


def _apply(obj: Any, fields: dict[str, Any]) -> None:
    """Set dataclass attributes by name, refusing names the class does not have."""
    for key, value in fields.items():
        if not hasattr(obj, key):
            raise TypeError(f"{type(obj).__name__} has no field {key!r}")
        setattr(obj, key, value)
