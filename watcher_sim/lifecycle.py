"""The rules a run follows as its status changes, and the paths the autopilot sends runs down.

`enter` is what happens to a run's fields when it moves to a status (times, counts, message,
diagnostics, log); `plan` lists the stages of a run that takes a given path ("fate"). The world
adds what needs its counters and agents (file ids, the agent's lastActivity).
"""

from __future__ import annotations

import math
import random
from datetime import datetime

from watcher_sim import content
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
    WAITING,
    Plan,
    SimDiagnostics,
    SimRun,
)
from watcher_sim.statuses import (
    CLOUD_ACCEPTED,
    CLOUD_ACTIVE,
    CLOUD_FINISHED,
    CLOUD_NAMES,
    CloudStatus,
)

# The paths a run can take, and how often the autopilot picks each when none is asked for.
FATES: dict[str, int] = {"success": 60, "failure": 20, "stopped": 10, "flash": 8, "skipped": 2}

# A run has not started executing while accepted, nor when it was skipped before execution.
_NOT_STARTED = CLOUD_ACCEPTED | {SKIPPED, CloudStatus.INVALID}

_STAT_FIELDS = ("pageCount", "requestCount", "dataCount", "errorCount", "runTimeSec", "traffic")


def random_fate(rng: random.Random) -> str:
    return rng.choices(list(FATES), weights=list(FATES.values()))[0]


def plan(fate: str, tick: float, rng: random.Random, running_ticks: float | None = None) -> Plan:
    """The stages of a run that takes the path `fate`, with dwell times in seconds.

    success: Queuing (or Waiting) → Starting → Running → Exporting → Completed or Success;
    failure: … → Running → Failure, archived to Failed 6 ticks later; stopped: … → Running →
    Stopping → Stopped; flash: a success over in a fraction of a tick (finishes between two
    polls); skipped: created Skipped. Running lasts `running_ticks` (default 1–3, random).
    """
    t = tick
    run_t = t * (running_ticks if running_ticks is not None else rng.choice((1, 2, 3)))
    head: Plan = [(QUEUING, t), (STARTING, t), (RUNNING, run_t)]
    if fate == "success":
        if rng.random() < 0.2:
            head[0] = (WAITING, t)
        return [*head, (EXPORTING, t), (rng.choice((COMPLETED, SUCCESS)), None)]
    if fate == "failure":
        return [*head, (FAILURE, 6 * t), (FAILED, None)]
    if fate == "stopped":
        return [*head, (STOPPING, t), (STOPPED, None)]
    if fate == "flash":
        q = t / 40
        return [(QUEUING, q), (STARTING, q), (RUNNING, 2 * q), (EXPORTING, q), (SUCCESS, None)]
    if fate == "skipped":
        return [(SKIPPED, None)]
    raise ValueError(f"unknown fate {fate!r}; one of {sorted(FATES)}")


def enter(run: SimRun, status: int, at: datetime, message: str | None = None) -> bool:
    """Move `run` to `status` at `at`: times, counts, message, diagnostics and log follow.

    startTime is set once the run is accepted and starts executing (seed 001's phases: Queuing
    and Waiting are "accepted", Starting begins "executing"); endTime and runTimeSec when it
    finishes (cleared again if a finished run is restarted in place). Archiving a Failure to
    Failed rewrites the status only. Returns True when the run has just finished and should
    get its output files.
    """
    previous = run.status
    run.status = status
    run.status_text = None
    run.changed = at
    if message is not None:
        run.message = message
    if status in CLOUD_ACTIVE and previous in CLOUD_FINISHED:
        run.endTime = run.runTimeSec = None
    if status not in _NOT_STARTED and run.startTime is None:
        run.startTime = at
        run.serverName = content.server_name(run.id)
    run.log.append((at, "INFO", f"Status: {CLOUD_NAMES.get(status, str(status))}"))
    if status == RUNNING:
        _raise_counts(run, content.partial_counts(run.id, 0.5))
    elif status == EXPORTING:
        _raise_counts(run, content.final_counts(run.id))
    elif status in CLOUD_FINISHED and not (status == FAILED and previous == FAILURE):
        _finish(run, status, at)
        return status != SKIPPED and run.auto_files and not run.files
    return False


def _finish(run: SimRun, status: int, at: datetime) -> None:
    if run.endTime is None:
        run.endTime = at
        if run.startTime is not None:
            run.runTimeSec = max(0, math.ceil((at - run.startTime).total_seconds()))
    if status in (COMPLETED, SUCCESS):
        _raise_counts(run, content.final_counts(run.id))
        run.exportCount = run.dataCount
    elif status in (FAILURE, FAILED):
        _raise_counts(run, content.partial_counts(run.id, 0.3))
        run.errorCount = max(run.errorCount, 1)
        run.message = run.message or content.failure_message(run.id)
        run.log.append((at, "ERROR", run.message))
        if run.diagnostics is None:
            causes, actions = content.advice(run.message)
            stats = {k: getattr(run, k) for k in _STAT_FIELDS}
            run.diagnostics = SimDiagnostics(run.message, causes, actions, stats)
    elif status == STOPPED:
        _raise_counts(run, content.partial_counts(run.id, 0.6))
        run.exportCount = run.dataCount


def _raise_counts(run: SimRun, counts: dict[str, int]) -> None:
    """Counts only grow: set each to the larger of its current and the given value."""
    for key, value in counts.items():
        setattr(run, key, max(getattr(run, key) or 0, value))
