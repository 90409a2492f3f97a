"""The Sequentum Cloud API v1 served over a `World`, as an aiohttp application.

Routes, field names and shapes follow the seeds (000, 001, 002) and the facts DESIGN.md adds
from the vendor's client: `/agent/all` with its hints, filters and pages (`cloud_agents`),
`/runs?maxRecords=N`, string statuses, schedules, the analytics endpoints (`cloud_analytics`),
the two error body shapes, and 100 requests a minute per key with 429 and Retry-After beyond.
Every request is recorded in `world.requests` and `world.calls` and its response size added to
`world.bytes_sent`; latency and scripted faults (`watcher_sim.faults`) apply before auth, the
rate limit after it, then the handler.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from watcher_sim import cloud_agents, cloud_analytics
from watcher_sim.cloud_wire import (
    API,
    WORLD,
    ApiError,
    cloud_error,
    error_response,
    json_body,
    path_int,
    pick,
    query_int,
    reply,
    run_json,
)
from watcher_sim.faults import dumps, fault_middlewares
from watcher_sim.model import FILE_FIELDS, VERSION_FIELDS, SimConflict, SimNotFound
from watcher_sim.ratelimit import throttle_middleware
from watcher_sim.world import World

DEFAULT_MAX_RECORDS = 50


# --------------------------------------------------------------------- handlers


async def list_runs(request: web.Request) -> web.Response:
    """GET /agent/{id}/runs?maxRecords=N: newest first, at most N (default 50)."""
    world = request.app[WORLD]
    limit = query_int(request, "maxRecords", DEFAULT_MAX_RECORDS)
    runs = world.runs(path_int(request, "agentId"))[:limit]
    return reply([run_json(r, world) for r in runs])


async def run_status(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    run = world.run(path_int(request, "agentId"), path_int(request, "runId"))
    return reply(run_json(run, world))


async def start_agent(request: web.Request) -> web.Response:
    """POST /agent/{id}/start: the new run (Queuing), or with isRunSynchronously the records
    of a run taken straight to completion, as `{configName: [records]}`. The run keeps the
    body's `inputParameters` as given (an object, or a string of JSON as seed 002 shows)."""
    world = request.app[WORLD]
    agent_id = path_int(request, "agentId")
    world.agent(agent_id)
    options = await json_body(request)
    if options.get("isRunSynchronously") is True:
        run = world.run_sync(agent_id, options.get("inputParameters"))
        return reply({run.configName or str(agent_id): run.records})
    run = world.start_run(
        agent_id,
        inputParameters=options.get("inputParameters"),
        parallelism=_opt_int(options, "parallelism"),
        parallelMaxConcurrency=_opt_int(options, "parallelMaxConcurrency"),
        parallelExport=options.get("parallelExport")
        if options.get("parallelExport") in ("Combined", "Separated")
        else None,
    )
    return reply(run_json(run, world))


def _opt_int(options: dict[str, Any], name: str) -> int | None:
    value = options.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def stop_run(request: web.Request) -> web.Response:
    """POST /agent/{id}/run/{runId}/stop: the run, now Stopping; 400 if it is not active."""
    world = request.app[WORLD]
    run = world.stop_run(path_int(request, "agentId"), path_int(request, "runId"))
    return reply(run_json(run, world))


async def list_files(request: web.Request) -> web.Response:
    run = request.app[WORLD].run(path_int(request, "agentId"), path_int(request, "runId"))
    return reply([pick(f, FILE_FIELDS) for f in run.files])


async def download_file(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    ids = (path_int(request, n) for n in ("agentId", "runId", "fileId"))
    f = world.file(*ids)
    # A name may hold anything a test gives it (NUL, newlines): the header gets a printable copy.
    shown = "".join(c if c.isprintable() and c not in '"\\' else "_" for c in f.name)
    return web.Response(
        body=f.content,
        content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{shown}"'},
    )


async def list_versions(request: web.Request) -> web.Response:
    agent = request.app[WORLD].agent(path_int(request, "agentId"))
    versions = sorted(agent.versions, key=lambda v: v.version, reverse=True)
    return reply([pick(v, VERSION_FIELDS) for v in versions])


async def restore_version(request: web.Request) -> web.Response:
    """POST /agent/{id}/version/{n}/restore with `{"content": comment}`: the new version."""
    world = request.app[WORLD]
    options = await json_body(request)
    comment = options.get("content") if isinstance(options.get("content"), str) else None
    version = world.restore_version(
        path_int(request, "agentId"), path_int(request, "versionNumber"), comment
    )
    return reply(pick(version, VERSION_FIELDS))


# ------------------------------------------------------------------ middlewares


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the Authorization header (the rate limit, next, counts per credential), and turn
    every error into the Cloud's error body."""
    world = request.app[WORLD]
    scheme, credential = _authorization(request)
    if not scheme:
        return _unauthorized("Authorization header is missing.")
    if scheme.lower() == "apikey":
        if credential not in world.api_keys:
            return _unauthorized("Invalid API key.")
    elif scheme.lower() == "bearer":
        if credential not in world.bearer_tokens:
            return _unauthorized("Invalid or expired access token.")
    else:
        return _unauthorized(f"Unsupported authorization scheme '{scheme}'.")
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except SimNotFound as exc:
        return error_response(404, str(exc))
    except SimConflict as exc:
        return error_response(400, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response


def _authorization(request: web.Request) -> tuple[str, str]:
    """The scheme and credential of the Authorization header ("" when absent)."""
    scheme, _, credential = request.headers.get("Authorization", "").strip().partition(" ")
    return scheme, credential.strip()


def _unauthorized(message: str) -> web.Response:
    response = error_response(401, message)
    response.headers["WWW-Authenticate"] = "ApiKey, Bearer"
    return response


_HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - Sequentum</title></head>
<body>
<h1>Sign in to Sequentum Cloud</h1>
<form method="post" action="/account/login">
<input name="email" type="email"><input name="password" type="password">
<button type="submit">Sign in</button>
</form>
</body>
</html>
"""


# ----------------------------------------------------------------------- the app


observe, inject_faults = fault_middlewares(WORLD, cloud_error, _HTML_PAGE)
throttle = throttle_middleware(WORLD, lambda r: _authorization(r)[1], cloud_error, dumps)


def make_cloud_app(world: World) -> web.Application:
    """An aiohttp application serving `world` as the Sequentum Cloud API v1."""
    app = web.Application(middlewares=[observe, inject_faults, guard, throttle])
    app[WORLD] = world
    agent = API + "/agent/{agentId}"
    run = agent + "/run/{runId}"
    analytics = API + "/analytics"
    r = app.router
    r.add_get(API + "/agent/all", cloud_agents.list_agents)
    r.add_get(agent, cloud_agents.get_agent)
    r.add_get(agent + "/schedules", cloud_agents.agent_schedules)
    r.add_get(agent + "/runs", list_runs)
    r.add_post(agent + "/start", start_agent)
    r.add_get(agent + "/versions", list_versions)
    r.add_post(agent + "/version/{versionNumber}/restore", restore_version)
    r.add_get(run + "/status", run_status)
    r.add_post(run + "/stop", stop_run)
    r.add_get(run + "/files", list_files)
    r.add_get(run + "/file/{fileId}/download", download_file)
    r.add_get(analytics + "/agents/{agentId}/runs/{runId}/diagnostics", cloud_analytics.diagnostics)
    r.add_get(analytics + "/agents/{agentId}/latest-failure", cloud_analytics.latest_failure)
    r.add_get(analytics + "/runs/summary", cloud_analytics.runs_summary)
    r.add_get(analytics + "/schedules/upcoming", cloud_analytics.upcoming_schedules)
    return app
