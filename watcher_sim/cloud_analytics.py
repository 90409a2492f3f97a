"""The simulated Cloud's analytics: whole-organisation answers in one request.

- `GET /analytics/runs/summary?startDate&endDate&status&includeDetails=true`: run counts of the
  runs created in the range (default: the last 30 days) and, with details, every failed run —
  a cheap cross-check that no failure was missed.
- `GET /analytics/agents/{agentId}/latest-failure`: the diagnostics of the agent's newest
  Failure or Failed run.
- `GET /analytics/agents/{agentId}/runs/{runId}/diagnostics`: a failed run's diagnostics.
- `GET /analytics/schedules/upcoming?startDate&endDate`: every schedule's next run, soonest
  first, for all agents at once.

Shapes follow the vendor client's models (RunsSummaryApiModel, RunDiagnosticsApiModel,
UpcomingScheduleApiModel); statuses in them are names, as those models type them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from watcher_sim.cloud_wire import (
    WORLD,
    ApiError,
    iso,
    path_int,
    query_time,
    reply,
    status_value,
)
from watcher_sim.model import SimAgent, SimRun
from watcher_sim.statuses import CLOUD_FAILED, CLOUD_NAMES, CLOUD_SUCCEEDED, CloudStatus
from watcher_sim.world import World

DEFAULT_SUMMARY_DAYS = 30

_RUNNING = frozenset(
    {CloudStatus.STARTING, CloudStatus.RUNNING, CloudStatus.EXPORTING, CloudStatus.STOPPING}
)
_QUEUED = frozenset({CloudStatus.QUEUING, CloudStatus.WAITING})
_WITH_ERRORS = "CompletedWithErrors"  # a success the Cloud names only as a string
_STAT_FIELDS = ("dataCount", "inputCount", "errorCount", "pageCount", "exportCount", "traffic")


def _name(run: SimRun) -> str:
    return run.status_text or CLOUD_NAMES.get(run.status, str(run.status))


def _all_runs(world: World) -> Iterator[tuple[SimAgent, SimRun]]:
    for agent in world.agents.values():
        for run in world.runs(agent.id, include_unlisted=True):
            yield agent, run


def _counts(runs: list[SimRun]) -> dict[str, int]:
    with_errors = sum(1 for r in runs if r.status_text == _WITH_ERRORS)
    completed = sum(
        1 for r in runs if r.status in CLOUD_SUCCEEDED and r.status_text != _WITH_ERRORS
    )
    return {
        "totalRuns": len(runs),
        "completedRuns": completed,
        "failedRuns": sum(1 for r in runs if r.status in CLOUD_FAILED),
        "completedWithErrorsRuns": with_errors,
        "runningRuns": sum(1 for r in runs if r.status in _RUNNING),
        "queuedRuns": sum(1 for r in runs if r.status in _QUEUED),
        "stoppedRuns": sum(1 for r in runs if r.status == CloudStatus.STOPPED),
    }


def _failed_detail(agent: SimAgent, run: SimRun) -> dict[str, Any]:
    return {
        "runId": run.id,
        "agentId": agent.id,
        "agentName": agent.name,
        "startTime": iso(run.startTime),
        "endTime": iso(run.endTime),
        "status": _name(run),
        "errorMessage": run.message,
        "spaceId": agent.spaceId,
        "spaceName": None,
    }


async def runs_summary(request: web.Request) -> web.Response:
    """GET /analytics/runs/summary: counts of the runs created between startDate and endDate
    (optionally of one `status`, by name or number), with `failedRunDetails` when
    includeDetails=true."""
    world = request.app[WORLD]
    end = query_time(request, "endDate", end_of_day=True) or world.now()
    start = query_time(request, "startDate") or end - timedelta(days=DEFAULT_SUMMARY_DAYS)
    if start > end:
        raise ApiError(400, "startDate must not be after endDate.")
    wanted = request.query.get("status", "").strip().casefold()
    chosen = [
        (agent, run)
        for agent, run in _all_runs(world)
        if run.created is not None and start <= run.created <= end
        and (not wanted or wanted in (_name(run).casefold(), str(int(run.status))))
    ]  # fmt: skip
    body: dict[str, Any] = {"startDate": iso(start), "endDate": iso(end)}
    body.update(_counts([run for _, run in chosen]))
    if request.query.get("includeDetails", "").lower() == "true":
        failed = [(a, r) for a, r in chosen if r.status in CLOUD_FAILED]
        failed.sort(key=lambda pair: (pair[1].created or start, pair[1].id), reverse=True)
        body["failedRunDetails"] = [_failed_detail(a, r) for a, r in failed]
    return reply(body)


def _diagnostics(agent: SimAgent, run: SimRun) -> dict[str, Any]:
    diag = run.diagnostics
    return {
        "runId": run.id,
        "agentId": agent.id,
        "agentName": agent.name,
        "status": _name(run),
        "errorMessage": diag.errorMessage if diag is not None else run.message,
        "startTime": iso(run.startTime),
        "endTime": iso(run.endTime),
        "runtimeSeconds": run.runTimeSec,
        "stats": {k: getattr(run, k) for k in _STAT_FIELDS},
        "possibleCauses": list(diag.possibleCauses) if diag is not None else [],
        "suggestedActions": list(diag.suggestedActions) if diag is not None else [],
    }


async def latest_failure(request: web.Request) -> web.Response:
    """GET /analytics/agents/{agentId}/latest-failure; 404 when the agent never failed."""
    world = request.app[WORLD]
    agent = world.agent(path_int(request, "agentId"))
    failed = [r for r in world.runs(agent.id, include_unlisted=True) if r.status in CLOUD_FAILED]
    if not failed:
        raise ApiError(404, f"No failed run for agent {agent.id}.")
    return reply(_diagnostics(agent, failed[0]))


async def diagnostics(request: web.Request) -> web.Response:
    """GET /analytics/agents/{id}/runs/{runId}/diagnostics; 404 when the run has none."""
    world = request.app[WORLD]
    run = world.run(path_int(request, "agentId"), path_int(request, "runId"))
    diag = run.diagnostics
    if diag is None:
        raise ApiError(404, f"No diagnostics for run {run.id}.")
    return reply(
        {
            "status": status_value(run, world),
            "errorMessage": diag.errorMessage,
            "possibleCauses": diag.possibleCauses,
            "suggestedActions": diag.suggestedActions,
            "stats": diag.stats,
        }
    )


async def upcoming_schedules(request: web.Request) -> web.Response:
    """GET /analytics/schedules/upcoming: each schedule's next run, soonest first, within
    startDate–endDate when given."""
    world = request.app[WORLD]
    start = query_time(request, "startDate")
    end = query_time(request, "endDate", end_of_day=True)
    rows: list[tuple[datetime, int, dict[str, Any]]] = []
    for schedule in world.schedules.values():
        when = schedule.nextRunTime
        agent = world.agents.get(schedule.configId)
        if when is None or agent is None:
            continue
        if (start is not None and when < start) or (end is not None and when > end):
            continue
        row = {
            "scheduleId": schedule.id,
            "agentId": agent.id,
            "agentName": agent.name,
            "scheduleName": schedule.name,
            "nextRunTime": iso(when),
            "timezone": schedule.timezone,
            "isEnabled": schedule.isEnabled,
        }
        rows.append((when, schedule.id, row))
    rows.sort(key=lambda r: (r[0], r[1]))
    return reply([row for _, _, row in rows])
