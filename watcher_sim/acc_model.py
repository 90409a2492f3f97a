"""The data of the simulated Agent Control Center (seed 004): agents, agent runs, job runs and
job schedules, the JSON fields the API shows of each (in the seed's order), and the status
names the simulator uses, from `watcher_sim.statuses`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from watcher_sim.schedules import Recurrence
from watcher_sim.statuses import AccJobStatus, AccRunStatus

NEVER_RUN, STARTING, RUNNING = AccRunStatus.NEVER_RUN, AccRunStatus.STARTING, AccRunStatus.RUNNING
DELIVERY, SUCCEEDED, FAILED = AccRunStatus.DELIVERY, AccRunStatus.SUCCEEDED, AccRunStatus.FAILED
STOPPED, FAILURE = AccRunStatus.STOPPED, AccRunStatus.FAILURE

JOB_IN_PROGRESS = AccJobStatus.IN_PROGRESS
JOB_WITH_FAILURE = AccJobStatus.IN_PROGRESS_WITH_FAILURE
JOB_SUCCEEDED, JOB_FAILURE, JOB_FAILED = (
    AccJobStatus.SUCCEEDED,
    AccJobStatus.FAILURE,
    AccJobStatus.FAILED,
)

# The JSON fields the API shows, in the seed's order.
AGENT_FIELDS: tuple[str, ...] = ("agentId", "name", "directoryId", "description")
RUN_FIELDS: tuple[str, ...] = (
    "agentRunHistoryId", "agentId", "sessionId", "runId", "agentJobScheduleId", "serverIp",
    "startTime", "endTime", "expectedEndTime", "runTime", "status", "successActionCount",
    "dynamicSuccessActionCount", "volume", "pageLoadCount", "requestCount", "downloadCount",
    "errors", "dataCount", "deliveryCount", "statusMessage", "logPath", "inputParameters",
    "logLevel", "isWindowLess", "isProductionRun", "backupDataExpiry", "lastUpdated",
)  # fmt: skip
JOB_FIELDS: tuple[str, ...] = (
    "agentJobHistoryId", "agentId", "startTime", "endTime", "totalSuccessActionCount",
    "totalDynamicSuccessActionCount", "totalPageLoadCount", "totalRequestCount",
    "totalDownloadCount", "totalVolume", "totalErrors", "totalDataCount", "totalDeliveryCount",
    "completedScheduleCount", "totalScheduleCount", "completedRunCount", "totalRunCount",
    "runId", "status", "agentJobSetting",
)  # fmt: skip
SCHEDULE_FIELDS: tuple[str, ...] = (
    "scheduleId", "agentId", "cron", "cronDescription", "sessionId", "startTime", "timeZoneId",
    "nextRunTime", "inputParameters", "logLevel", "isWindowless", "errorMessage",
    "scheduleStatus", "lastRunTime", "completedTime", "isEnabled",
)  # fmt: skip
JOB_TOTALS = {  # a job's totals, summed over the runs' counts
    "totalSuccessActionCount": "successActionCount",
    "totalDynamicSuccessActionCount": "dynamicSuccessActionCount",
    "totalPageLoadCount": "pageLoadCount",
    "totalRequestCount": "requestCount",
    "totalDownloadCount": "downloadCount",
    "totalVolume": "volume",
    "totalErrors": "errors",
    "totalDataCount": "dataCount",
    "totalDeliveryCount": "deliveryCount",
}

Plan = list[tuple[int, float | None]]  # statuses still to enter, with their dwell in seconds


@dataclass(slots=True, eq=False)
class AccAgent:
    """An agent in the ACC repository. The fields in `AGENT_FIELDS` are served as JSON."""

    agentId: str
    name: str
    directoryId: str
    description: str | None = None
    # Simulator only.
    path: str = ""
    start_every: float | None = None  # autopilot: seconds between two starts
    jobs_started: int = 0


@dataclass(slots=True, eq=False)
class AccRun:
    """An agent run. The fields in `RUN_FIELDS` are served as JSON (`runTime` as a TimeSpan)."""

    agentRunHistoryId: str
    agentId: str
    sessionId: str | None = None
    runId: int = 0  # the job run number, 0 when not started by a job
    agentJobScheduleId: str | None = None
    serverIp: str = "127.0.0.1"
    startTime: datetime | None = None
    endTime: datetime | None = None
    expectedEndTime: datetime | None = None
    runTime: float | None = None  # seconds
    status: int = STARTING
    successActionCount: int = 0
    dynamicSuccessActionCount: int = 0
    volume: int = 0
    pageLoadCount: int = 0
    requestCount: int = 0
    downloadCount: int = 0
    errors: int = 0
    dataCount: int = 0
    deliveryCount: int = 0
    statusMessage: str | None = None
    logPath: str | None = None
    inputParameters: str | None = None
    logLevel: int = 1
    isWindowLess: bool = True
    isProductionRun: bool = True
    backupDataExpiry: datetime | None = None
    lastUpdated: datetime | None = None
    # Simulator only.
    created: datetime | None = None
    job_id: str | None = None
    log: list[str] = field(default_factory=list, repr=False)
    final_pages: int = 10
    final_data: int = 100
    plan: Plan = field(default_factory=list, repr=False)
    version: int = 0  # bumped by every change by hand: stale planned transitions are dropped


@dataclass(slots=True, eq=False)
class AccJob:
    """A job run. The fields in `JOB_FIELDS` are served as JSON; totals come from its runs."""

    agentJobHistoryId: str
    agentId: str
    runId: int
    startTime: datetime | None = None
    endTime: datetime | None = None
    status: int = JOB_IN_PROGRESS
    completedScheduleCount: int = 0
    totalScheduleCount: int = 1
    agentJobSetting: Any = None
    # Simulator only.
    run_ids: list[str] = field(default_factory=list)
    manual: bool = False  # its status was set through the API: no longer derived from runs


@dataclass(slots=True, eq=False)
class AccSchedule:
    """A job schedule: a cron expression in a time zone that starts a job of the agent. The
    fields in `SCHEDULE_FIELDS` are served as JSON; `cron`, `startTime` and `timeZoneId` come
    from its recurrence, `scheduleStatus` and `completedTime` from the last job it started."""

    scheduleId: str
    agentId: str
    recurrence: Recurrence
    nextRunTime: datetime | None
    sessionId: str | None = None
    inputParameters: str = "{}"
    logLevel: int = 1
    isWindowless: bool = True
    errorMessage: str | None = None
    lastRunTime: datetime | None = None
    isEnabled: bool = True
    # Simulator only.
    fires: bool = True  # False: when due it silently starts nothing (nextRunTime moves on)
    fates: tuple[str, ...] = ("success",)  # how the runs of the jobs it starts end
    job_id: str | None = None  # the last job it started
