"""The data of the simulated Sequentum Cloud: agents, runs, files, versions (and, re-exported
from `watcher_sim.faults`, the faults every simulator shares).

Field names are the seeds' JSON names (camelCase) so that serving them is a lookup; the
`*_FIELDS` tuples list, in the seeds' order, which fields the API shows. Status codes come from
the simulator's own table (`watcher_sim.statuses`), written from the seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from watcher_sim.content import FILE_TYPE_DATA
from watcher_sim.faults import FAULT_KINDS as FAULT_KINDS  # re-exported
from watcher_sim.faults import Clock as Clock  # re-exported
from watcher_sim.faults import Fault as Fault  # re-exported
from watcher_sim.schedules import Recurrence
from watcher_sim.statuses import CloudStatus

RUNNING, EXPORTING, STARTING = CloudStatus.RUNNING, CloudStatus.EXPORTING, CloudStatus.STARTING
QUEUING, STOPPING, FAILURE = CloudStatus.QUEUING, CloudStatus.STOPPING, CloudStatus.FAILURE
FAILED, STOPPED, COMPLETED = CloudStatus.FAILED, CloudStatus.STOPPED, CloudStatus.COMPLETED
SUCCESS, SKIPPED, WAITING = CloudStatus.SUCCESS, CloudStatus.SKIPPED, CloudStatus.WAITING

# The JSON fields of the seeds, in the seeds' order (seed 000 for runs, seed 002 for agents).
RUN_FIELDS: tuple[str, ...] = (
    "id", "configId", "configName", "spaceId", "organizationId", "organizationName", "sequence",
    "parallelism", "parallelMaxConcurrency", "parallelExport", "parallelSet", "startTime",
    "endTime", "created", "status", "message", "configVersion", "actionCount", "pageCount",
    "dynamicPageCount", "requestCount", "dataCount", "inputCount", "errorCount", "exportCount",
    "traffic", "runTimeSec", "serverName", "tableType",
)  # fmt: skip
AGENT_FIELDS: tuple[str, ...] = (
    "agentTemplates", "configType", "description", "documentation", "icon", "image",
    "inputParameters", "id", "isActive", "lastActivity", "name", "proxyPoolId", "spaceId",
    "startUrl", "status", "userId", "validationStatus", "version", "created", "updated",
)  # fmt: skip
FILE_FIELDS: tuple[str, ...] = ("id", "regionId", "fileType", "name", "fileSize", "created")
VERSION_FIELDS: tuple[str, ...] = ("userName", "version", "created", "comments", "fileSize")
# A schedule as `GET /agent/{id}/schedules` shows it (the vendor client's AgentScheduleApiModel).
SCHEDULE_FIELDS: tuple[str, ...] = (
    "id", "configId", "name", "schedule", "localSchedule", "timezone", "nextRunTime",
    "startTime", "scheduleType", "isEnabled", "runEveryCount", "runEveryPeriod", "created",
    "updated",
)  # fmt: skip

# A plan is the statuses a run will still enter, each with how long (seconds) it stays there;
# the last stage's dwell is None (the run stays there).
Plan = list[tuple[int, float | None]]


def utc_now() -> datetime:
    """The default clock: the current time, timezone-aware UTC."""
    return datetime.now(UTC)


class SimNotFound(LookupError):
    """An agent, run, file or version the world does not have (the API answers 404)."""


class SimConflict(ValueError):
    """An operation the run's current status does not allow (the API answers 400)."""


@dataclass(slots=True, eq=False)
class SimFile:
    """An output file of a run: listed by `/files`, served by `/file/{id}/download`."""

    id: int
    name: str
    content: bytes = b""
    fileType: int = FILE_TYPE_DATA
    regionId: int | None = None
    fileSize: int | None = None  # None: the length of `content`
    created: datetime | None = None

    def __post_init__(self) -> None:
        if self.fileSize is None:
            self.fileSize = len(self.content)


@dataclass(slots=True, eq=False)
class SimDiagnostics:
    """What the analytics diagnostics endpoint says about a run (its status comes from the run)."""

    errorMessage: str | None
    possibleCauses: list[str] = field(default_factory=list)
    suggestedActions: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class SimVersion:
    """One entry of an agent's version history (`/agent/{id}/versions`)."""

    version: int
    userName: str = "Sim Admin"
    created: datetime | None = None
    comments: str | None = None
    fileSize: int = 3665


@dataclass(slots=True, eq=False)
class SimAgent:
    """An agent (config). The fields named in `AGENT_FIELDS` are served as JSON, but for
    `status` and `lastActivity`, which the world works out from the agent's runs."""

    id: int
    name: str
    agentTemplates: Any = None
    configType: int = 1
    description: str | None = None
    documentation: str | None = None
    icon: str | None = None
    image: str | None = None
    inputParameters: dict[str, Any] = field(default_factory=dict)
    isActive: bool = False
    proxyPoolId: int | None = None
    spaceId: int | None = None
    startUrl: str | None = None
    userId: int = 289
    validationStatus: int = 3
    version: int = 1
    created: datetime | None = None
    updated: datetime | None = None
    # Simulator only.
    versions: list[SimVersion] = field(default_factory=list)
    archived: bool = False  # its schedules' runs are Skipped (seed 001)
    start_every: float | None = None  # autopilot: seconds between two starts of this agent
    runs_started: int = 0  # the run `sequence` counter


@dataclass(slots=True, eq=False)
class SimRun:
    """A run. The fields named in `RUN_FIELDS` are served as JSON; the rest is simulator state."""

    id: int
    configId: int
    configName: str | None = None
    spaceId: int = 0
    organizationId: int = 78
    organizationName: str | None = None
    sequence: int = 1
    parallelism: int | None = 1
    parallelMaxConcurrency: int | None = 1
    parallelExport: str = "Combined"
    parallelSet: int | None = 0
    startTime: datetime | None = None
    endTime: datetime | None = None
    created: datetime | None = None
    status: int = QUEUING
    message: str | None = None
    configVersion: int | None = None
    actionCount: int = 0
    pageCount: int = 0
    dynamicPageCount: int = 0
    requestCount: int = 0
    dataCount: int = 0
    inputCount: int | None = None
    errorCount: int = 0
    exportCount: int | None = None
    traffic: int | None = None
    runTimeSec: int | None = None
    serverName: str | None = None
    tableType: str | None = None
    # Simulator only.
    files: list[SimFile] = field(default_factory=list)
    diagnostics: SimDiagnostics | None = None
    status_text: str | None = None  # sent instead of the status when set, e.g. "FailedToStart"
    records: list[dict[str, Any]] = field(default_factory=list)
    log: list[tuple[datetime, str, str]] = field(default_factory=list, repr=False)
    auto_files: bool = True  # write the CSV and log files when the run finishes
    listed: bool = True  # False once the run has left the runs listing (history window)
    plan: Plan = field(default_factory=list, repr=False)
    due: datetime | None = field(default=None, repr=False)
    changed: datetime | None = None  # when it last changed: created, a new status, a restart
    inputParameters: Any = None  # as the start request gave them
    schedule_id: int | None = None  # the schedule that started it


@dataclass(slots=True, eq=False)
class SimSchedule:
    """A schedule of an agent. The fields in `SCHEDULE_FIELDS` are served as JSON; its
    recurrence gives `scheduleType`, `schedule`, `runEveryCount` and `runEveryPeriod`."""

    id: int
    configId: int
    name: str
    recurrence: Recurrence
    nextRunTime: datetime | None
    isEnabled: bool = True
    created: datetime | None = None
    updated: datetime | None = None
    # Simulator only.
    fires: bool = True  # False: when due it silently starts nothing (nextRunTime moves on)
    fate: str | None = None  # the path its runs take (None: random)

    @property
    def timezone(self) -> str:
        return self.recurrence.timezone

    @property
    def startTime(self) -> datetime:
        return self.recurrence.start
