"""The Sequentum Agent Control Center API (seed 004) served over an `AccWorld`.

Paths are the seed's, under `/api` (no version prefix): agent by path, cluster start, run
history, run details, restart and retry (`RunMethod`), log and backup downloads (zip files),
job start, job run details, job history, the runs of a job run, set the latest job status, job
logs and backup, and the job schedules (list, add or update, delete, start, on and off).
Auth is `Authorization: Bearer <token>`; without a valid token the answer is 401 with an empty
body and `WWW-Authenticate: Bearer`, as an ASP.NET JWT API answers. Other errors are
`{"message": …}`. Times are written in the world's UTC offset (`+10:00`) with 7 fractional
digits, and `runTime` as a .NET TimeSpan (`00:00:08.9677836`), as in the seed. The ACC
documents no rate limit; a world can be given one (`AccWorld(rate_limit=N)`).
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from watcher_sim.acc_model import (
    AGENT_FIELDS,
    JOB_FIELDS,
    RUN_FIELDS,
    SCHEDULE_FIELDS,
    AccJob,
    AccRun,
    AccSchedule,
)
from watcher_sim.acc_world import AccWorld
from watcher_sim.faults import dumps, fault_middlewares
from watcher_sim.model import SimConflict, SimNotFound
from watcher_sim.ratelimit import throttle_middleware
from watcher_sim.schedules import zone
from watcher_sim.statuses import ACC_DEFAULT_RETRY_METHOD, ACC_RETRY_METHODS

ACC = web.AppKey("acc_world", AccWorld)
DEFAULT_COUNT = 100  # "The latest 100 agent runs are returned if the count is not specified."


class AccError(Exception):
    """An error answer: the status and `{"message": …}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ JSON shapes


def acc_time(value: datetime | None, offset: timedelta) -> str | None:
    """`2019-05-21T13:52:14.3020127+10:00`: local time in `offset`, 7 fractional digits."""
    if value is None:
        return None
    text = value.astimezone(timezone(offset)).isoformat(timespec="microseconds")
    return text[:26] + "0" + text[26:]


def timespan(seconds: float | None) -> str | None:
    """Seconds as a .NET TimeSpan: `[d.]hh:mm:ss.fffffff`."""
    if seconds is None:
        return None
    ticks = round(seconds * 10_000_000)
    whole, frac = divmod(ticks, 10_000_000)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}.{frac:07d}"
    return f"{days}.{text}" if days else text


def _pick(obj: object, names: tuple[str, ...], offset: timedelta) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(obj, name)
        out[name] = acc_time(value, offset) if isinstance(value, datetime) else value
    return out


def run_json(run: AccRun, world: AccWorld, *, listing: bool = False) -> dict[str, Any]:
    out = _pick(run, RUN_FIELDS, world.utc_offset)
    out["runTime"] = timespan(run.runTime)
    if listing and not world.history_messages:
        out["statusMessage"] = None
    return out


def job_json(job: AccJob, world: AccWorld) -> dict[str, Any]:
    values = {**{n: getattr(job, n, None) for n in JOB_FIELDS}, **world.job_totals(job)}
    return {
        n: acc_time(values[n], world.utc_offset) if isinstance(values[n], datetime) else values[n]
        for n in JOB_FIELDS
    }


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def _zip(files: dict[str, str]) -> web.Response:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), text)
    return web.Response(body=buffer.getvalue(), content_type="application/zip")


def _count(request: web.Request) -> int:
    raw = request.query.get("count", "")
    if raw == "":
        return DEFAULT_COUNT
    if not raw.isdigit():
        raise AccError(400, f"The value '{raw}' is not valid for count.")
    return int(raw)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise AccError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise AccError(400, "The request body must be a JSON object.")
    return data


# --------------------------------------------------------------------- handlers


async def agent_by_path(request: web.Request) -> web.Response:
    """GET api/agent?agentPath=…: `{agentId, name, directoryId, description}`."""
    path = request.query.get("agentPath", "")
    if not path.strip():
        raise AccError(400, "agentPath is required.")
    agent = request.app[ACC].agent_at(path)
    return _json(_pick(agent, AGENT_FIELDS, timedelta()))


async def cluster_start(request: web.Request) -> web.Response:
    """POST api/agent/{agentId}/cluster/start, or api/agent/cluster/start?agentPath=…"""
    world = request.app[ACC]
    await _body(request)
    if "agentId" in request.match_info:
        agent = world.agent(request.match_info["agentId"])
    else:
        agent = world.agent_at(request.query.get("agentPath", ""))
    run = world.start_run(agent.agentId)
    return _json({"agentRunHistoryIds": [run.agentRunHistoryId]})


async def history(request: web.Request) -> web.Response:
    """GET api/agent/{agentId}/history?count=N: the latest runs, newest first (100 default)."""
    world = request.app[ACC]
    runs = world.history(request.match_info["agentId"], _count(request))
    return _json([run_json(r, world, listing=True) for r in runs])


async def job_run_history(request: web.Request) -> web.Response:
    """GET api/agent/{agentId}/run/{runId}/history: the agent runs of one job run."""
    world = request.app[ACC]
    raw = request.match_info["runId"]
    if not raw.isdigit():
        raise AccError(400, f"The value '{raw}' is not valid for runId.")
    runs = world.job_runs(request.match_info["agentId"], int(raw))[: _count(request)]
    return _json([run_json(r, world, listing=True) for r in runs])


async def run_details(request: web.Request) -> web.Response:
    world = request.app[ACC]
    return _json(run_json(world.run(request.match_info["runId"]), world))


async def restart(request: web.Request) -> web.Response:
    """POST api/run/{id}/restart: the run, Starting again."""
    world = request.app[ACC]
    return _json(run_json(world.restart_run(request.match_info["runId"]), world))


async def retry(request: web.Request) -> web.Response:
    """POST api/run/{id}/retry?RunMethod=… (default ContinueAndRetryErrorsRefreshAgent): the
    run restarted in place, or with New the new run. The seed shows no answer; the run is
    what the client needs to follow it."""
    world = request.app[ACC]
    method = request.query.get("RunMethod", ACC_DEFAULT_RETRY_METHOD)
    if method not in ACC_RETRY_METHODS:
        raise AccError(400, f"The value '{method}' is not valid for RunMethod.")
    return _json(run_json(world.retry_run(request.match_info["runId"], method), world))


async def run_log(request: web.Request) -> web.Response:
    """GET api/run/{id}/log: the run's log file, compressed."""
    run = request.app[ACC].run(request.match_info["runId"])
    return _zip({run.logPath or "run.log": "\n".join(run.log) + "\n"})


async def run_backup(request: web.Request) -> web.Response:
    """GET api/run/{id}/backup: the run's data files, compressed."""
    world = request.app[ACC]
    run = world.run(request.match_info["runId"])
    return _zip({f"{world.agent(run.agentId).name}.csv": _csv(run)})


async def job_start(request: web.Request) -> web.Response:
    world = request.app[ACC]
    await _body(request)
    job = world.start_job(request.match_info["agentId"])
    return _json({"agentJobHistoryId": job.agentJobHistoryId, "jobRunId": job.runId})


async def job_details(request: web.Request) -> web.Response:
    world = request.app[ACC]
    return _json(job_json(world.job(request.match_info["jobId"]), world))


async def job_history(request: web.Request) -> web.Response:
    world = request.app[ACC]
    jobs = world.job_history(request.match_info["agentId"], _count(request))
    return _json([job_json(j, world) for j in jobs])


async def job_status(request: web.Request) -> web.Response:
    """POST api/job/{agentId}/status `{"status": n}`: set the latest job run's status."""
    world = request.app[ACC]
    status = (await _body(request)).get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 5:
        raise AccError(400, "status must be a job status between 0 and 5.")
    world.set_job_status(request.match_info["agentId"], status)
    return web.Response(status=200)


# --------------------------------------------------------------- job schedules


def schedule_json(schedule: AccSchedule, world: AccWorld) -> dict[str, Any]:
    """A schedule as seed 004 shows it: `startTime` in the schedule's own time zone without an
    offset ("2019-05-30T15:36:00"), the other times in the world's offset."""
    recurrence, offset = schedule.recurrence, world.utc_offset
    job = world.jobs.get(schedule.job_id or "")
    local_start = recurrence.start.astimezone(zone(recurrence.timezone))
    values = {
        "scheduleId": schedule.scheduleId,
        "agentId": schedule.agentId,
        "cron": recurrence.cron,
        "cronDescription": f"Runs at '{recurrence.cron}' ({recurrence.timezone}).",
        "sessionId": schedule.sessionId,
        "startTime": local_start.strftime("%Y-%m-%dT%H:%M:%S"),
        "timeZoneId": recurrence.timezone,
        "nextRunTime": acc_time(schedule.nextRunTime, offset),
        "inputParameters": schedule.inputParameters,
        "logLevel": schedule.logLevel,
        "isWindowless": schedule.isWindowless,
        "errorMessage": schedule.errorMessage,
        "scheduleStatus": int(world.schedule_status(schedule)),
        "lastRunTime": acc_time(schedule.lastRunTime, offset),
        "completedTime": acc_time(job.endTime if job is not None else None, offset),
        "isEnabled": schedule.isEnabled,
    }
    return {name: values[name] for name in SCHEDULE_FIELDS}


async def job_schedules(request: web.Request) -> web.Response:
    """GET api/job/{agentId}/schedules."""
    world = request.app[ACC]
    schedules = world.agent_schedules(request.match_info["agentId"])
    return _json([schedule_json(s, world) for s in schedules])


async def save_schedule(request: web.Request) -> web.Response:
    """POST api/job/{agentId}/schedule: add a schedule, or update the one its scheduleId names;
    `startTime` is local time in `timeZoneId`. Answers the schedule."""
    world = request.app[ACC]
    body = await _body(request)
    cron, tz = body.get("cron"), body.get("timeZoneId") or "UTC"
    if not isinstance(cron, str) or not isinstance(tz, str):
        raise AccError(400, "cron and timeZoneId must be strings.")
    fields = {k: body[k] for k in ("sessionId", "inputParameters", "logLevel") if k in body}
    if isinstance(body.get("isWindowless"), bool):
        fields["isWindowless"] = body["isWindowless"]
    try:
        start = None
        if body.get("startTime"):
            start = datetime.fromisoformat(str(body["startTime"])).replace(tzinfo=zone(tz))
        schedule = world.add_schedule(
            request.match_info["agentId"],
            cron,
            time_zone=tz,
            start=start,
            enabled=body.get("isEnabled") is not False,
            schedule_id=body.get("scheduleId") or None,
            **fields,
        )
    except ValueError as exc:
        raise AccError(400, str(exc)) from None
    return _json(schedule_json(schedule, world))


async def delete_schedule(request: web.Request) -> web.Response:
    """DELETE api/job/schedule/{scheduleId}."""
    request.app[ACC].remove_schedule(request.match_info["scheduleId"])
    return web.Response(status=200)


async def delete_agent_schedules(request: web.Request) -> web.Response:
    """DELETE api/job/{agentId}/schedules."""
    request.app[ACC].remove_agent_schedules(request.match_info["agentId"])
    return web.Response(status=200)


async def start_schedule(request: web.Request) -> web.Response:
    """POST api/job/schedule/{scheduleId}/start: the schedule's job, started now."""
    job = request.app[ACC].start_schedule(request.match_info["scheduleId"])
    return _json({"agentJobHistoryId": job.agentJobHistoryId, "jobRunId": job.runId})


async def switch_schedule(request: web.Request) -> web.Response:
    """POST api/job/schedule/{scheduleId}/on|off."""
    schedule = request.app[ACC].schedule(request.match_info["scheduleId"])
    schedule.isEnabled = request.match_info["switch"] == "on"
    return web.Response(status=200)


async def switch_agent_schedules(request: web.Request) -> web.Response:
    """POST api/job/{agentId}/schedules/on|off."""
    for schedule in request.app[ACC].agent_schedules(request.match_info["agentId"]):
        schedule.isEnabled = request.match_info["switch"] == "on"
    return web.Response(status=200)


# ------------------------------------------------------------- job run files


async def job_logs(request: web.Request) -> web.Response:
    world = request.app[ACC]
    job = world.job(request.match_info["jobId"])
    runs = [world.run(r) for r in job.run_ids]
    return _zip({r.logPath or f"{r.agentRunHistoryId}.log": "\n".join(r.log) + "\n" for r in runs})


async def job_backup(request: web.Request) -> web.Response:
    world = request.app[ACC]
    job = world.job(request.match_info["jobId"])
    return _zip({f"{r}.csv": _csv(world.run(r)) for r in job.run_ids})


def _csv(run: AccRun) -> str:
    rows = ["Id,Title,Price"] + [
        f"{i},Item {i},{i * 3 % 97}.99" for i in range(1, run.dataCount + 1)
    ]
    return "\n".join(rows) + "\n"


# ------------------------------------------------------------------ middlewares


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the Bearer token; turn every error into `{"message": …}`."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or token.strip() not in request.app[ACC].tokens:
        return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
    try:
        return await handler(request)
    except AccError as exc:
        return _json({"message": str(exc)}, exc.status)
    except SimNotFound as exc:
        return _json({"message": str(exc)}, 404)
    except SimConflict as exc:
        return _json({"message": str(exc)}, 400)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json({"message": exc.reason}, exc.status)


def _acc_error(status: int, message: str) -> dict[str, Any]:
    return {"message": message}


_HTML_PAGE = """<!DOCTYPE html>
<html><head><title>Agent Control Center - Login</title></head>
<body><form method="post" action="/account/login"><input name="username"><input
name="password" type="password"><button>Log in</button></form></body></html>
"""

observe, inject_faults = fault_middlewares(ACC, _acc_error, _HTML_PAGE)
throttle = throttle_middleware(
    ACC, lambda r: r.headers["Authorization"].strip().partition(" ")[2].strip(), _acc_error, dumps
)


def make_acc_app(world: AccWorld) -> web.Application:
    """An aiohttp application serving `world` as the Agent Control Center API."""
    app = web.Application(middlewares=[observe, inject_faults, guard, throttle])
    app[ACC] = world
    r = app.router
    r.add_get("/api/agent", agent_by_path)
    r.add_post("/api/agent/cluster/start", cluster_start)
    r.add_post("/api/agent/{agentId}/cluster/start", cluster_start)
    r.add_get("/api/agent/{agentId}/history", history)
    r.add_get("/api/agent/{agentId}/run/{runId}/history", job_run_history)
    r.add_get("/api/run/{runId}", run_details)
    r.add_post("/api/run/{runId}/restart", restart)
    r.add_post("/api/run/{runId}/retry", retry)
    r.add_get("/api/run/{runId}/log", run_log)
    r.add_get("/api/run/{runId}/backup", run_backup)
    r.add_get("/api/job/run/{jobId}", job_details)
    r.add_get("/api/job/run/{jobId}/logs", job_logs)
    r.add_get("/api/job/run/{jobId}/backup", job_backup)
    r.add_post("/api/job/{agentId}/start", job_start)
    r.add_get("/api/job/{agentId}/history", job_history)
    r.add_post("/api/job/{agentId}/status", job_status)
    r.add_get("/api/job/{agentId}/schedules", job_schedules)
    r.add_delete("/api/job/{agentId}/schedules", delete_agent_schedules)
    r.add_post("/api/job/{agentId}/schedules/{switch:on|off}", switch_agent_schedules)
    r.add_post("/api/job/{agentId}/schedule", save_schedule)
    r.add_delete("/api/job/schedule/{scheduleId}", delete_schedule)
    r.add_post("/api/job/schedule/{scheduleId}/start", start_schedule)
    r.add_post("/api/job/schedule/{scheduleId}/{switch:on|off}", switch_schedule)
    return app
