"""The world behind the simulated Sequentum Cloud: agents, runs, files, schedules, faults, the
rate limit and an autopilot.

A `World` is plain data plus the rules the seeds describe (run lifecycle, Failure archived to
Failed, stop → Stopping → Stopped, a schedule of an archived agent making Skipped runs). Tests
script it directly (`add_run`, `set_status`, `add_schedule`, `inject`); the demo and benchmarks
let `step()` move runs along by the injected clock. An agent's hints (`last_run`,
`last_activity`) are worked out from its runs when asked. Nothing here speaks HTTP:
`watcher_sim.cloud` serves a world over the documented API v1.

Deterministic: given the seed, the clock readings and the sequence of calls, a world always
produces the same ids, timestamps, counts and bytes.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from watcher_sim import content, lifecycle
from watcher_sim.cloud_schedules import AgentSchedules
from watcher_sim.faults import SimServer
from watcher_sim.model import (
    COMPLETED,
    EXPORTING,
    FAILED,
    FAILURE,
    QUEUING,
    RUNNING,
    SKIPPED,
    STARTING,
    STOPPED,
    STOPPING,
    SUCCESS,
    Clock,
    Fault,
    Plan,
    SimAgent,
    SimConflict,
    SimDiagnostics,
    SimFile,
    SimNotFound,
    SimRun,
    SimSchedule,
    SimVersion,
    utc_now,
)
from watcher_sim.statuses import CLOUD_ACTIVE

__all__ = [
    "Fault",
    "SimAgent",
    "SimConflict",
    "SimDiagnostics",
    "SimFile",
    "SimNotFound",
    "SimRun",
    "SimVersion",
    "World",
]


class World(AgentSchedules, SimServer):
    """A Sequentum Cloud organisation in memory, scriptable by tests and driven by a clock.

    `now` is the injected clock; `step()` applies every scheduled transition that is due by it.
    """

    def __init__(
        self,
        *,
        now: Clock | None = None,
        seed: int = 0,
        tick: float = 1.5,
        status_as_string: bool = False,
        api_keys: Iterable[str] = ("sim-key",),
        bearer_tokens: Iterable[str] = ("sim-token",),
        latency: float = 0.0,
        rate_limit: int | None = 100,
        rate_window: float = 60.0,
        organization_id: int = 78,
        hints: bool = True,
    ) -> None:
        super().__init__(
            now=now or utc_now, latency=latency, rate_limit=rate_limit, rate_window=rate_window
        )
        self.rng = random.Random(seed)
        self.tick = tick
        self.status_as_string = status_as_string
        #: Where /agent/all counts pages from: 1 (pageIndex 0 also means the first page) or 0.
        self.page_base = 1
        #: The key of the agents in a page of /agent/all: "agents", or "items" as one doc says.
        self.page_key = "agents"
        #: The most agents a page of /agent/all holds: a larger recordsPerPage is cut to it.
        self.max_page_size: int | None = 100
        #: False: every agent's `status` and `lastActivity` are null, a platform without hints.
        self.hints = hints
        self.api_keys: set[str] = set(api_keys)
        self.bearer_tokens: set[str] = set(bearer_tokens)
        self.organization_id = organization_id
        self.agents: dict[int, SimAgent] = {}
        self._runs: dict[int, dict[int, SimRun]] = {}
        self._next_agent_id = 1000
        self._next_run_id = 100_000
        self._next_file_id = 10_000
        self._next_schedule_id = 1
        self.schedules: dict[int, SimSchedule] = {}
        self._queue: list[tuple[datetime, int, _Job]] = []  # a heap, ordered by due time
        self._seq = itertools.count()

    # ----------------------------------------------------------------- lookups

    def agent(self, agent_id: int) -> SimAgent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise SimNotFound(f"Agent {agent_id} not found") from None

    def run(self, agent_id: int, run_id: int) -> SimRun:
        try:
            return self._runs[self.agent(agent_id).id][run_id]
        except KeyError:
            raise SimNotFound(f"Run {run_id} not found for agent {agent_id}") from None

    def runs(self, agent_id: int, *, include_unlisted: bool = False) -> list[SimRun]:
        """The agent's runs, newest first (by created, then id), as the runs listing shows them."""
        runs = self._runs[self.agent(agent_id).id].values()
        if not include_unlisted:
            runs = [r for r in runs if r.listed]
        return sorted(runs, key=lambda r: (r.created or _EPOCH, r.id), reverse=True)

    def last_run(self, agent_id: int) -> SimRun | None:
        """The agent's newest run (by created, then id), whether listed or not; None if none."""
        runs = self._runs[self.agent(agent_id).id].values()
        return max(runs, key=lambda r: (r.created or _EPOCH, r.id), default=None)

    def last_activity(self, agent_id: int) -> datetime | None:
        """When any run of the agent last changed (created, a new status, archived, restarted,
        stopped); None if it never ran."""
        runs = self._runs[self.agent(agent_id).id].values()
        return max((r.changed for r in runs if r.changed is not None), default=None)

    def file(self, agent_id: int, run_id: int, file_id: int) -> SimFile:
        for f in self.run(agent_id, run_id).files:
            if f.id == file_id:
                return f
        raise SimNotFound(f"File {file_id} not found for run {run_id}")

    # ---------------------------------------------------------------- building

    def add_agent(self, id: int | None = None, name: str | None = None, **fields: Any) -> SimAgent:
        """Add an agent; `fields` override any `SimAgent` field (e.g. startUrl, spaceId)."""
        agent_id = self._claim("_next_agent_id", id)
        if agent_id in self.agents:
            raise ValueError(f"agent {agent_id} already exists")
        now = self.now()
        agent = SimAgent(id=agent_id, name=name or f"agent-{agent_id}", created=now, updated=now)
        agent.versions = [SimVersion(1, created=now, comments="Initial version")]
        _apply(agent, fields)
        self.agents[agent_id] = agent
        self._runs[agent_id] = {}
        return agent

    def add_run(
        self,
        agent_id: int,
        status: int = QUEUING,
        *,
        run_id: int | None = None,
        message: str | None = None,
        status_text: str | None = None,
        files: Iterable[SimFile] | None = None,
        diagnostics: SimDiagnostics | None = None,
        **fields: Any,
    ) -> SimRun:
        """Add a run in `status` at the clock's now; `fields` override any `SimRun` field.

        Times are filled like the platform does: created now, startTime once the status is past
        pending, endTime/runTimeSec once finished. A finished run gets a CSV and a log file unless
        `files` is given; a Failure gets a default message and diagnostics unless given.
        """
        agent = self.agent(agent_id)
        now = self.now()
        run = self._new_run(agent, now, run_id)
        if files is not None:
            run.files, run.auto_files = list(files), False
        run.diagnostics = diagnostics
        self._enter(run, status, now, message)
        run.status_text = status_text
        _apply(run, fields)
        return run

    # ------------------------------------------------------------- transitions

    def set_status(
        self,
        agent_id: int,
        run_id: int,
        status: int,
        message: str | None = None,
        *,
        status_text: str | None = None,
    ) -> SimRun:
        """Put a run in `status` now (times and counts follow); cancels any autopilot plan."""
        run = self.run(agent_id, run_id)
        run.plan, run.due = [], None
        self._enter(run, status, self.now(), message)
        run.status_text = status_text
        return run

    def archive(self, agent_id: int, run_id: int) -> SimRun:
        """Move a Failure (6) run to history: its status is rewritten to Failed (7)."""
        run = self.run(agent_id, run_id)
        if run.status != FAILURE:
            raise SimConflict(f"Run {run_id} is not in Failure status")
        return self.set_status(agent_id, run_id, FAILED)

    def start_run(
        self,
        agent_id: int,
        *,
        fate: str | None = None,
        inputParameters: Any = None,
        parallelism: int | None = None,
        parallelMaxConcurrency: int | None = None,
        parallelExport: str | None = None,
    ) -> SimRun:
        """What `POST /agent/{id}/start` does: a new run in Queuing (4), moved along by `step()`,
        that keeps the `inputParameters` it was started with.

        `fate` picks the path it will take ("success", "failure", "stopped", "flash", "skipped");
        None lets the world's random generator choose.
        """
        agent = self.agent(agent_id)
        run = self.begin_run(agent, self.now(), fate or self._random_fate())
        run.inputParameters = inputParameters
        if parallelism is not None:
            run.parallelism = parallelism
        if parallelMaxConcurrency is not None:
            run.parallelMaxConcurrency = parallelMaxConcurrency
        if parallelExport is not None:
            run.parallelExport = parallelExport
        return run

    def run_sync(self, agent_id: int, inputParameters: Any = None) -> SimRun:
        """A synchronous start: a new run taken straight to Success, returned finished."""
        run = self.begin_run(self.agent(agent_id), self.now(), "success")
        run.inputParameters = inputParameters
        now = self.now()
        while run.plan:
            status, _ = run.plan.pop(0)
            self._enter(run, status, now)
        run.due = None
        return run

    def stop_run(self, agent_id: int, run_id: int) -> SimRun:
        """Ask a run to stop: Stopping (5) now, Stopped (8) on the next `step()`."""
        run = self.run(agent_id, run_id)
        if run.status not in CLOUD_ACTIVE:
            raise SimConflict(f"Run {run_id} is not active")
        now = self.now()
        if run.status != STOPPING:
            self._enter(run, STOPPING, now)
        run.plan = [(STOPPED, None)]
        self._schedule_run(run, now)
        return run

    def restart_run(self, agent_id: int, run_id: int) -> SimRun:
        """Restart a Failure (6) run in place: it goes back to Starting and runs to success."""
        run = self.run(agent_id, run_id)
        if run.status != FAILURE:
            raise SimConflict(f"Run {run_id} is not restartable")
        now = self.now()
        t = self.tick
        run.plan = [(RUNNING, 2 * t), (EXPORTING, t), (SUCCESS, None)]
        self._enter(run, STARTING, now)
        self._schedule_run(run, now + timedelta(seconds=t))
        return run

    def remove_run(self, agent_id: int, run_id: int, *, forget: bool = False) -> None:
        """Let a run leave the runs listing (history window). Its status and files still answer,
        unless `forget`, which deletes it entirely."""
        run = self.run(agent_id, run_id)
        run.plan, run.due = [], None
        if forget:
            del self._runs[agent_id][run_id]
        else:
            run.listed = False

    def restore_version(
        self, agent_id: int, version: int, comments: str | None = None
    ) -> SimVersion:
        """Restore an agent version: a copy of it becomes the new, highest version."""
        agent = self.agent(agent_id)
        old = next((v for v in agent.versions if v.version == version), None)
        if old is None:
            raise SimNotFound(f"Version {version} not found for agent {agent_id}")
        now = self.now()
        new = SimVersion(
            agent.version + 1,
            old.userName,
            now,
            comments or f"Restored version {version}",
            old.fileSize,
        )
        agent.versions.append(new)
        agent.version, agent.updated = new.version, now
        return new

    def add_finished_run(
        self,
        agent_id: int,
        status: int,
        created: datetime,
        seconds: float,
        *,
        message: str | None = None,
        files: bool = True,
    ) -> SimRun:
        """A run that finished in the past: created at `created`, ran for `seconds`.

        For building history. With `files` it takes the full path (log, CSV, diagnostics);
        without, it is a bare record, fast enough for hundreds of thousands of runs.
        """
        agent = self.agent(agent_id)
        start = created + _LAUNCH
        end = start + timedelta(seconds=seconds)
        if files:
            run = self._new_run(agent, created)
            if status != SKIPPED:
                self._enter(run, RUNNING, start)
            self._enter(run, FAILURE if status == FAILED else status, end, message)
            if status == FAILED:
                self._enter(run, FAILED, end)
            return run
        # The bare record, built in one constructor call: ~5 µs a run.
        run_id = self._next_run_id
        self._next_run_id += 1
        agent.runs_started += 1
        ok = status in (COMPLETED, SUCCESS)
        failed = status in (FAILURE, FAILED)
        actions, pages, dynamic, requests, data, inputs, traffic = content.count_values(
            run_id, 1.0 if ok else 0.5
        )
        run = SimRun(
            id=run_id,
            configId=agent.id,
            configName=agent.name,
            spaceId=agent.spaceId or 0,
            organizationId=self.organization_id,
            sequence=agent.runs_started,
            startTime=start,
            endTime=end,
            created=created,
            status=status,
            message=message or (content.failure_message(run_id) if failed else None),
            actionCount=actions,
            pageCount=pages,
            dynamicPageCount=dynamic,
            requestCount=requests,
            dataCount=data,
            inputCount=inputs,
            errorCount=1 if failed else 0,
            exportCount=0 if failed else data,
            traffic=traffic,
            runTimeSec=max(0, math.ceil(seconds)),
            serverName=content.server_name(run_id),
            tableType="run",
            changed=end,
        )
        self._runs[agent.id][run_id] = run
        return run

    # -------------------------------------------------------------- autopilot

    def step(self) -> int:
        """Apply every scheduled transition and autopilot start due by the clock; return how many.

        Transitions are applied at their own due time, so a jump of the clock replays them with
        realistic timestamps (a short run may start and finish within one step).
        """
        now = self.now()
        done = 0
        while self._queue and self._queue[0][0] <= now:
            due, _, job = heapq.heappop(self._queue)
            if job.kind == "start":
                self._autostart(job, due)
                done += 1
                continue
            if job.kind == "schedule":
                self._fire(job.run_id, due)
                done += 1
                continue
            run = self._runs.get(job.agent_id, {}).get(job.run_id)
            if run is None or run.due != due or not run.plan:
                continue  # stale: the run was changed by hand since
            status, dwell = run.plan.pop(0)
            self._enter(run, status, due)
            run.due = None
            if run.plan and dwell is not None:
                self._schedule_run(run, due + timedelta(seconds=dwell))
            done += 1
        return done

    def schedule_start(
        self,
        agent_id: int,
        at: datetime,
        fate: str | None = None,
        running_ticks: float | None = None,
    ) -> None:
        """Have the autopilot start a run of the agent at `at` (and then every `start_every`)."""
        self._due_at(at, "start", agent_id, 0, fate, running_ticks)

    # -------------------------------------------------------------- factories

    @classmethod
    def demo(
        cls, *, seed: int = 0, now: Clock | None = None, tick: float = 1.5, **kw: Any
    ) -> World:
        """A handful of named agents with history whose runs succeed, fail and get stopped.

        Within the first ~7 ticks (about 10 s at the default tick) the first runs of the demo
        agents finish as success, failure, stopped and a short success that starts and finishes
        between two polls; later runs take random paths.
        """
        from watcher_sim.scenarios import build_demo

        world = cls(now=now, seed=seed, tick=tick, **kw)
        build_demo(world)
        return world

    @classmethod
    def bulk(
        cls,
        agents: int = 1000,
        runs_per_agent: int = 20,
        active_fraction: float = 0.05,
        *,
        seed: int = 0,
        now: Clock | None = None,
        tick: float = 1.5,
        start_every: float | None = None,
        **kw: Any,
    ) -> World:
        """Many agents with finished history and a fraction with an active run, for benchmarks.

        With `start_every` (seconds), every agent also starts a new run that often, staggered.
        """
        from watcher_sim.scenarios import build_bulk

        world = cls(now=now, seed=seed, tick=tick, **kw)
        build_bulk(world, agents, runs_per_agent, active_fraction, start_every)
        return world

    # --------------------------------------------------------------- internals

    def _claim(self, counter: str, wanted: int | None) -> int:
        nxt: int = getattr(self, counter)
        value = nxt if wanted is None else wanted
        setattr(self, counter, max(nxt, value + 1))
        return value

    def _new_run(self, agent: SimAgent, created: datetime, run_id: int | None = None) -> SimRun:
        rid = self._claim("_next_run_id", run_id)
        if rid in self._runs[agent.id]:
            raise ValueError(f"run {rid} already exists")
        agent.runs_started += 1
        run = SimRun(
            id=rid,
            configId=agent.id,
            configName=agent.name,
            spaceId=agent.spaceId or 0,
            organizationId=self.organization_id,
            sequence=agent.runs_started,
            created=created,
            tableType="run",
            changed=created,
        )
        self._runs[agent.id][rid] = run
        return run

    def new_file(
        self, run: SimRun, name: str, data: bytes, file_type: int, at: datetime
    ) -> SimFile:
        """Attach an output file to a run."""
        f = SimFile(self._claim("_next_file_id", None), name, data, file_type, created=at)
        run.files.append(f)
        return f

    def begin_run(
        self, agent: SimAgent, at: datetime, fate: str, running_ticks: float | None = None
    ) -> SimRun:
        """Create a run at `at` that will take the path `fate`, and schedule its transitions."""
        plan = self._plan(fate, running_ticks)
        run = self._new_run(agent, at)
        status, dwell = plan.pop(0)
        run.plan = plan
        self._enter(run, status, at)
        if plan and dwell is not None:
            self._schedule_run(run, at + timedelta(seconds=dwell))
        return run

    def _autostart(self, job: _Job, at: datetime) -> None:
        agent = self.agents.get(job.agent_id)
        if agent is None:
            return
        busy = any(r.status in CLOUD_ACTIVE for r in self._runs[agent.id].values())
        if not busy:  # the autopilot runs agents exclusively
            self.begin_run(agent, at, job.fate or self._random_fate(), job.running_ticks)
        if agent.start_every:
            jitter = self.rng.uniform(0.8, 1.2)
            self.schedule_start(agent.id, at + timedelta(seconds=agent.start_every * jitter))

    def _schedule_run(self, run: SimRun, due: datetime) -> None:
        run.due = due
        self._due_at(due, "run", run.configId, run.id)

    def _due_at(self, when: datetime, *job: Any) -> None:
        """Queue a job (the fields of `_Job`) due at `when`."""
        heapq.heappush(self._queue, (when, next(self._seq), _Job(*job)))

    def _random_fate(self) -> str:
        return lifecycle.random_fate(self.rng)

    def _plan(self, fate: str, running_ticks: float | None = None) -> Plan:
        return lifecycle.plan(fate, self.tick, self.rng, running_ticks)

    def _enter(self, run: SimRun, status: int, at: datetime, message: str | None = None) -> None:
        """Put `run` in `status` at time `at` (see `lifecycle.enter`), writing its output files
        when it finishes."""
        if lifecycle.enter(run, status, at, message):
            self._write_files(run, at)

    def _write_files(self, run: SimRun, at: datetime) -> None:
        name = run.configName or f"agent-{run.configId}"
        if run.dataCount:
            run.records = content.make_records(name, run.id, run.dataCount)
            self.new_file(run, f"{name}.csv", content.records_csv(run.records),
                          content.FILE_TYPE_DATA, at)  # fmt: skip
        log = content.run_log(name, run.id, run.log)
        self.new_file(run, f"{name}.log", log, content.FILE_TYPE_LOG, at)


_EPOCH = datetime.min.replace(tzinfo=UTC)
_LAUNCH = timedelta(milliseconds=10)  # from a run's creation to its start, in history


class _Job(NamedTuple):
    """A job due at a time: the next transition of a run, an agent's next autopilot start, or
    a schedule's next firing."""

    kind: str  # "run" | "start" | "schedule"
    agent_id: int
    run_id: int = 0  # the run's id, or the schedule's
    fate: str | None = None
    running_ticks: float | None = None


def _apply(obj: Any, fields: dict[str, Any]) -> None:
    """Set dataclass attributes by name, refusing names the class does not have."""
    for key, value in fields.items():
        if not hasattr(obj, key):
            raise TypeError(f"{type(obj).__name__} has no field {key!r}")
        setattr(obj, key, value)
