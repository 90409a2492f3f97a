"""The status maps of every platform, as data (DESIGN.md, "Status map").

Each function turns a platform's raw status into a `StatusInfo`: the platform's own name and
number are kept, and `phase`/`outcome` say what it means. A value that is not in the map becomes
phase `unknown` — never an exception. Pure: no I/O.
"""

from __future__ import annotations

from watcher.runs import Outcome, Phase, StatusInfo

P, R, F, U = Phase.PENDING, Phase.RUNNING, Phase.FINISHED, Phase.UNKNOWN
OK, FAIL, STOP, SKIP = Outcome.SUCCESS, Outcome.FAILURE, Outcome.STOPPED, Outcome.SKIPPED

# Sequentum Cloud RunStatus (seeds 000, 001).
CLOUD_CODES: dict[int, tuple[str, Phase, Outcome | None]] = {
    0: ("Invalid", U, None),
    1: ("Running", R, None),
    2: ("Exporting", R, None),
    3: ("Starting", P, None),
    4: ("Queuing", P, None),
    5: ("Stopping", R, None),
    6: ("Failure", F, FAIL),
    7: ("Failed", F, FAIL),
    8: ("Stopped", F, STOP),
    9: ("Completed", F, OK),
    10: ("Success", F, OK),
    11: ("Skipped", F, SKIP),
    12: ("Waiting", P, None),
}

# The string names the Cloud API may send instead of the integer (DESIGN.md).
CLOUD_NAMES: dict[str, tuple[int | None, Phase, Outcome | None, bool]] = {
    "queuing": (4, P, None, False),
    "queued": (4, P, None, False),
    "starting": (3, P, None, False),
    "waiting": (12, P, None, False),
    "waitingonfailure": (None, P, None, False),
    "running": (1, R, None, False),
    "exporting": (2, R, None, False),
    "stopping": (5, R, None, False),
    "completed": (9, F, OK, False),
    "success": (10, F, OK, False),
    "completedwitherrors": (None, F, OK, True),
    "failure": (6, F, FAIL, False),
    "failed": (7, F, FAIL, False),
    "failedtostart": (None, F, FAIL, False),
    "stopped": (8, F, STOP, False),
    "skipped": (11, F, SKIP, False),
    "invalid": (0, U, None, False),
    "unknown": (None, U, None, False),
}

# Agent Control Center: run statuses and job statuses (seed 004). ACC 5 is Failed, not Stopping.
ACC_RUN_CODES: dict[int, tuple[str, Phase, Outcome | None]] = {
    0: ("Never Run", P, None),
    1: ("Starting", P, None),
    2: ("Running", R, None),
    3: ("Delivery", R, None),
    4: ("Succeeded", F, OK),
    5: ("Failed", F, FAIL),
    6: ("Stopped", F, STOP),
    7: ("Failure", F, FAIL),
}

ACC_JOB_CODES: dict[int, tuple[str, Phase, Outcome | None]] = {
    0: ("Never Run", P, None),
    1: ("In Progress", R, None),
    2: ("In Progress With Failure", R, None),
    3: ("Succeeded", F, OK),
    4: ("Failure", F, FAIL),
    5: ("Failed", F, FAIL),
}

# automation-runs API (seed 003): strings, case-insensitive.
AUTOMATION_NAMES: dict[str, tuple[Phase, Outcome | None, bool]] = {
    **{s: (P, None, False) for s in ("pending", "queued", "scheduled", "waiting")},
    **{s: (R, None, False) for s in ("running", "in_progress", "retrying", "starting")},
    **{s: (F, OK, False) for s in ("succeeded", "success", "completed")},
    "completed-with-errors": (F, OK, True),
    **{
        s: (F, FAIL, False)
        for s in ("failed", "failure", "error", "timed-out", "timed_out", "exhausted")
    },
    **{s: (F, STOP, False) for s in ("cancelled", "canceled", "aborted", "stopped")},
    "skipped": (F, SKIP, False),
}


_CLOUD_INFO = {code: StatusInfo(name, code, ph, oc) for code, (name, ph, oc) in CLOUD_CODES.items()}


def cloud_status(raw: object) -> StatusInfo:
    """Map a Sequentum Cloud run status, given as an integer (0–12) or as a string name."""
    if type(raw) is int and raw in _CLOUD_INFO:  # the common case, fast (bool is not int here)
        return _CLOUD_INFO[raw]
    code = _as_int(raw)
    if code is not None:
        return _CLOUD_INFO.get(code) or StatusInfo(str(code), code, U)
    if isinstance(raw, str) and raw.strip():
        name = raw.strip()
        hit = CLOUD_NAMES.get(_squash(name))
        if hit:
            code, phase, outcome, with_errors = hit
            return StatusInfo(name, code, phase, outcome, with_errors)
        return StatusInfo(name, None, U)
    return StatusInfo("null" if raw is None else repr(raw)[:40], None, U)


def acc_run_status(raw: object) -> StatusInfo:
    return _coded(raw, ACC_RUN_CODES)


def acc_job_status(raw: object) -> StatusInfo:
    info = _coded(raw, ACC_JOB_CODES)
    if info.status_code == 2:  # In Progress With Failure: an early warning before the end
        return StatusInfo(info.status, 2, info.phase, None, warning=True)
    return info


def automation_status(raw: object) -> StatusInfo:
    if isinstance(raw, str) and raw.strip():
        name = raw.strip()
        hit = AUTOMATION_NAMES.get(name.lower())
        if hit:
            phase, outcome, with_errors = hit
            return StatusInfo(name, None, phase, outcome, with_errors)
        return StatusInfo(name, None, U)
    return StatusInfo("null" if raw is None else repr(raw)[:40], None, U)


def _coded(raw: object, table: dict[int, tuple[str, Phase, Outcome | None]]) -> StatusInfo:
    code = _as_int(raw)
    if code is not None and code in table:
        name, phase, outcome = table[code]
        return StatusInfo(name, code, phase, outcome)
    if code is None and isinstance(raw, str):
        # A platform that sends the name instead of the number: match it case-insensitively.
        for c, (name, phase, outcome) in table.items():
            if _squash(name) == _squash(raw):
                return StatusInfo(name, c, phase, outcome)
    return StatusInfo(str(raw)[:40], code, U)


_INT32 = 2**31


def _as_int(raw: object) -> int | None:
    """An integer status, from an int or a numeric string; absurd values are not statuses."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit() and len(raw.strip()) < 12:
        raw = int(raw.strip())
    if isinstance(raw, int) and -_INT32 <= raw < _INT32:
        return raw
    return None


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())
