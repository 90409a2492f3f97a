"""The status vocabularies of the three simulated platforms, written from their API documents.

The simulator keeps its own copy of every table on purpose: it is a second implementation of
the platforms, so a mistake in the product's tables (`watcher.status`) must show up as a test
failure instead of being mirrored here. Each table cites the seed it comes from.
"""

from __future__ import annotations

from enum import IntEnum

# ---------------------------------------------------------------- Sequentum Cloud


class CloudStatus(IntEnum):
    """RunStatus as the Cloud API sends it (seed 000: `status` enum 0–12; names from seed 001's
    status reference)."""

    INVALID = 0  # reserved for malformed records; never on a real run
    RUNNING = 1
    EXPORTING = 2
    STARTING = 3
    QUEUING = 4
    STOPPING = 5
    FAILURE = 6  # finished; restartable while in the active runs table
    FAILED = 7  # a Failure archived to run history: no longer resumable
    STOPPED = 8
    COMPLETED = 9  # no success criteria configured
    SUCCESS = 10  # success criteria passed
    SKIPPED = 11  # e.g. a schedule fired while the agent was archived
    WAITING = 12  # paused, waiting on an external condition


CLOUD_NAMES: dict[int, str] = {s.value: s.name.title() for s in CloudStatus}
"""The name of each status as the Cloud writes it ("Running", "Failure", …)."""

# Seed 001, "Run phases": Accepted (Queuing, Waiting) → Executing (Starting, Running) →
# Delivering outputs (Exporting) → Finished. Stopping is the way out of executing after a stop.
CLOUD_ACCEPTED = frozenset({CloudStatus.QUEUING, CloudStatus.WAITING})
CLOUD_ACTIVE = frozenset(
    {
        CloudStatus.RUNNING,
        CloudStatus.EXPORTING,
        CloudStatus.STARTING,
        CloudStatus.QUEUING,
        CloudStatus.STOPPING,
        CloudStatus.WAITING,
    }
)
"""Seed 001, "Active statuses"."""
CLOUD_FINISHED = frozenset(
    {
        CloudStatus.FAILURE,
        CloudStatus.STOPPED,
        CloudStatus.COMPLETED,
        CloudStatus.SUCCESS,
        CloudStatus.SKIPPED,
        CloudStatus.FAILED,
    }
)
"""Seed 001, "Finished statuses", plus Failed (7): a Failure rewritten when archived."""
CLOUD_SUCCEEDED = frozenset({CloudStatus.COMPLETED, CloudStatus.SUCCESS})
CLOUD_FAILED = frozenset({CloudStatus.FAILURE, CloudStatus.FAILED})

CLOUD_STRING_ONLY: tuple[str, ...] = (
    "Unknown",
    "Queued",
    "CompletedWithErrors",
    "FailedToStart",
    "WaitingOnFailure",
)
"""Status names the Cloud may send as strings that have no integer of their own (the vendor
client's RunStatus enum). The simulator sends them only when a test scripts one (`status_text`).
"""
CLOUD_STRING_NAMES: frozenset[str] = frozenset(CLOUD_NAMES.values()) | frozenset(CLOUD_STRING_ONLY)
"""Every status name the Cloud may send."""


class ScheduleType(IntEnum):
    """How a Cloud schedule recurs (the vendor client's schedule requests: 0–3)."""

    NONE = 0
    RUN_ONCE = 1
    RUN_EVERY = 2
    CRON = 3


SCHEDULE_TYPE_NAMES: dict[int, str] = {0: "None", 1: "RunOnce", 2: "RunEvery", 3: "CRON"}


class EveryPeriod(IntEnum):
    """The unit of a RunEvery schedule's `runEveryPeriod` (1 minutes … 5 months)."""

    MINUTES = 1
    HOURS = 2
    DAYS = 3
    WEEKS = 4
    MONTHS = 5


# ------------------------------------------------------------ Agent Control Center


class AccRunStatus(IntEnum):
    """An ACC agent run's status (seed 004, "Run status can be one of the following values")."""

    NEVER_RUN = 0
    STARTING = 1
    RUNNING = 2
    DELIVERY = 3
    SUCCEEDED = 4
    FAILED = 5  # finished (unlike the Cloud's 5, Stopping)
    STOPPED = 6
    FAILURE = 7


ACC_RUN_NAMES: dict[int, str] = {
    0: "Never Run",
    1: "Starting",
    2: "Running",
    3: "Delivery",
    4: "Succeeded",
    5: "Failed",
    6: "Stopped",
    7: "Failure",
}
ACC_RUN_ACTIVE = frozenset({AccRunStatus.STARTING, AccRunStatus.RUNNING, AccRunStatus.DELIVERY})
ACC_RUN_FINISHED = frozenset(
    {AccRunStatus.SUCCEEDED, AccRunStatus.FAILED, AccRunStatus.STOPPED, AccRunStatus.FAILURE}
)
ACC_RUN_BAD = frozenset({AccRunStatus.FAILED, AccRunStatus.STOPPED, AccRunStatus.FAILURE})
"""The ends that make a job fail: a run that did not succeed."""


class AccJobStatus(IntEnum):
    """An ACC job run's status (seed 004, "The job status can be one of the following values")."""

    NEVER_RUN = 0
    IN_PROGRESS = 1
    IN_PROGRESS_WITH_FAILURE = 2
    SUCCEEDED = 3
    FAILURE = 4  # some of its runs failed
    FAILED = 5  # all of its runs failed


ACC_JOB_NAMES: dict[int, str] = {
    0: "Never Run",
    1: "In Progress",
    2: "In Progress With Failure",
    3: "Succeeded",
    4: "Failure",
    5: "Failed",
}
ACC_JOB_FINISHED = frozenset({AccJobStatus.SUCCEEDED, AccJobStatus.FAILURE, AccJobStatus.FAILED})


class AccScheduleStatus(IntEnum):
    """An ACC job schedule's `scheduleStatus` (seed 004, "Schedule status …")."""

    WAITING = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3


ACC_RETRY_METHODS: frozenset[str] = frozenset(
    {
        "Restart",
        "Continue",
        "ContinueRefreshAgent",
        "ContinueAndRetryErrors",
        "ContinueAndRetryErrorsRefreshAgent",
        "New",
    }
)
"""`RunMethod` of `POST api/run/{id}/retry` (seed 004)."""
ACC_DEFAULT_RETRY_METHOD = "ContinueAndRetryErrorsRefreshAgent"

# ----------------------------------------------------------------- automation runs

# Seed 003 shows "pending" as a run's status and leaves the rest to the implementation; the
# simulated platform uses these, lower case, as a FastAPI service would.
AUTOMATION_ACTIVE = frozenset({"pending", "running"})
AUTOMATION_FINISHED = frozenset({"succeeded", "failed", "cancelled"})
AUTOMATION_RETRYABLE = frozenset({"failed", "cancelled"})
AUTOMATION_STEP_STATUSES = frozenset(
    {"pending", "running", "succeeded", "failed", "cancelled", "skipped"}
)
AUTOMATION_RETRY_MODES: tuple[str, ...] = ("from_failed", "from_step", "full")
"""`mode` of `POST …/{run_id}/retry` (seed 003), the default first."""
