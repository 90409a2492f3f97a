"""The Sequentum Cloud API v1 served over a `World`, as an aiohttp application.

Routes, field names and shapes follow the seeds (000, 001, 002) and the facts DESIGN.md adds:
`/agent/all` paging, `/runs?maxRecords=N`, string statuses, the analytics diagnostics endpoint,
the two error body shapes and Retry-After. Every request is recorded in `world.requests` and its
response size added to `world.bytes_sent`; latency and scripted faults (`watcher_sim.faults`)
apply before auth and the handler.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from watcher_sim.faults import dumps, fault_middlewares, phrase
from watcher_sim.model import (
    AGENT_FIELDS,
    FILE_FIELDS,
    RUN_FIELDS,
    VERSION_FIELDS,
    SimConflict,
    SimNotFound,
    SimRun,
)
from watcher_sim.ratelimit import throttle_middleware
from watcher_sim.statuses import CLOUD_NAMES
from watcher_sim.world import World

WORLD = web.AppKey("world", World)

API = "/api/v1"
DEFAULT_MAX_RECORDS = 50
DEFAULT_RECORDS_PER_PAGE = 50


class ApiError(Exception):
    """An error answer in the Cloud's shape: `{statusCode, statusDescription, message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ------------------------------------------------------------------ JSON shapes


def iso(value: datetime | None) -> str | None:
    """A datetime as the API writes it: UTC, microseconds, "Z" ("2024-12-18T13:08:49.748151Z").

    Naive datetimes are taken to be UTC already.
    """
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pick(obj: object, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(obj, name)
        out[name] = iso(value) if isinstance(value, datetime) else value
    return out


def status_value(run: SimRun, world: World) -> int | str:
    """The run's status as the API sends it: its `status_text` if set, else the integer, or
    its name when the world sends statuses as strings."""
    if run.status_text is not None:
        return run.status_text
    if world.status_as_string and run.status in CLOUD_NAMES:
        return CLOUD_NAMES[run.status]
    return run.status


def run_json(run: SimRun, world: World) -> dict[str, Any]:
    out = _pick(run, RUN_FIELDS)
    out["status"] = status_value(run, world)
    return out


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def error_response(status: int, message: str) -> web.Response:
    """An error in the Cloud's own shape."""
    return _json(_cloud_error(status, message), status)


# ------------------------------------------------------------------ parameters


def _path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, f"The value '{raw}' is not valid for {name}.")
    return int(raw)


def _query_int(request: web.Request, name: str, default: int, minimum: int = 0) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"The value '{raw}' is not valid for {name}.") from None
    if value < minimum:
        raise ApiError(400, f"{name} must be at least {minimum}.")
    return value


# --------------------------------------------------------------------- handlers


async def list_agents(request: web.Request) -> web.Response:
    """GET /agent/all: a plain list, or a page `{agents, totalRecordCount}` when the query asks
    for paging. pageIndex is 1-based (0 is accepted as the first page too) unless
    `world.page_base` is 0, which makes the server count pages from 0; sortOrder=1 sorts
    descending, 0 ascending; agents without a value of the sort column come last."""
    world = request.app[WORLD]
    agents = list(world.agents.values())
    column = request.query.get("sortColumn")
    if column in AGENT_FIELDS:
        descending = _query_int(request, "sortOrder", 0) == 1
        present = [a for a in agents if getattr(a, column) is not None]
        absent = [a for a in agents if getattr(a, column) is None]
        present.sort(key=lambda a: (getattr(a, column), a.id), reverse=descending)
        agents = present + absent
    if "pageIndex" not in request.query and "recordsPerPage" not in request.query:
        return _json([_pick(a, AGENT_FIELDS) for a in agents])
    base = world.page_base
    page = max(_query_int(request, "pageIndex", base), base) - base + 1
    size = _query_int(request, "recordsPerPage", DEFAULT_RECORDS_PER_PAGE, minimum=1)
    chosen = agents[(page - 1) * size : page * size]
    return _json(
        {"agents": [_pick(a, AGENT_FIELDS) for a in chosen], "totalRecordCount": len(agents)}
    )


async def get_agent(request: web.Request) -> web.Response:
    agent = request.app[WORLD].agent(_path_int(request, "agentId"))
    return _json(_pick(agent, AGENT_FIELDS))


async def list_runs(request: web.Request) -> web.Response:
    """GET /agent/{id}/runs?maxRecords=N: newest first, at most N (default 50)."""
    world = request.app[WORLD]
    limit = _query_int(request, "maxRecords", DEFAULT_MAX_RECORDS)
    runs = world.runs(_path_int(request, "agentId"))[:limit]
    return _json([run_json(r, world) for r in runs])


async def run_status(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    run = world.run(_path_int(request, "agentId"), _path_int(request, "runId"))
    return _json(run_json(run, world))


async def start_agent(request: web.Request) -> web.Response:
    """POST /agent/{id}/start: the new run (Queuing), or with isRunSynchronously the records
    of a run taken straight to completion, as `{configName: [records]}`."""
    world = request.app[WORLD]
    agent_id = _path_int(request, "agentId")
    world.agent(agent_id)
    options = await _json_body(request)
    if options.get("isRunSynchronously") is True:
        run = world.run_sync(agent_id)
        return _json({run.configName or str(agent_id): run.records})
    run = world.start_run(
        agent_id,
        parallelism=_opt_int(options, "parallelism"),
        parallelMaxConcurrency=_opt_int(options, "parallelMaxConcurrency"),
        parallelExport=options.get("parallelExport")
        if options.get("parallelExport") in ("Combined", "Separated")
        else None,
    )
    return _json(run_json(run, world))


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        options = json.loads(raw)
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(options, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return options


def _opt_int(options: dict[str, Any], name: str) -> int | None:
    value = options.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def stop_run(request: web.Request) -> web.Response:
    """POST /agent/{id}/run/{runId}/stop: the run, now Stopping; 400 if it is not active."""
    world = request.app[WORLD]
    run = world.stop_run(_path_int(request, "agentId"), _path_int(request, "runId"))
    return _json(run_json(run, world))


async def list_files(request: web.Request) -> web.Response:
    run = request.app[WORLD].run(_path_int(request, "agentId"), _path_int(request, "runId"))
    return _json([_pick(f, FILE_FIELDS) for f in run.files])


async def download_file(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    ids = (_path_int(request, n) for n in ("agentId", "runId", "fileId"))
    f = world.file(*ids)
    # A name may hold anything a test gives it (NUL, newlines): the header gets a printable copy.
    shown = "".join(c if c.isprintable() and c not in '"\\' else "_" for c in f.name)
    return web.Response(
        body=f.content,
        content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{shown}"'},
    )


async def list_versions(request: web.Request) -> web.Response:
    agent = request.app[WORLD].agent(_path_int(request, "agentId"))
    versions = sorted(agent.versions, key=lambda v: v.version, reverse=True)
    return _json([_pick(v, VERSION_FIELDS) for v in versions])


async def restore_version(request: web.Request) -> web.Response:
    """POST /agent/{id}/version/{n}/restore with `{"content": comment}`: the new version."""
    world = request.app[WORLD]
    options = await _json_body(request)
    comment = options.get("content") if isinstance(options.get("content"), str) else None
    version = world.restore_version(
        _path_int(request, "agentId"), _path_int(request, "versionNumber"), comment
    )
    return _json(_pick(version, VERSION_FIELDS))


async def diagnostics(request: web.Request) -> web.Response:
    """GET /analytics/agents/{id}/runs/{runId}/diagnostics; 404 when the run has none."""
    world = request.app[WORLD]
    run = world.run(_path_int(request, "agentId"), _path_int(request, "runId"))
    diag = run.diagnostics
    if diag is None:
        raise ApiError(404, f"No diagnostics for run {run.id}.")
    return _json(
        {
            "status": status_value(run, world),
            "errorMessage": diag.errorMessage,
            "possibleCauses": diag.possibleCauses,
            "suggestedActions": diag.suggestedActions,
            "stats": diag.stats,
        }
    )


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


def _cloud_error(status: int, message: str) -> dict[str, Any]:
    return {"statusCode": status, "statusDescription": phrase(status), "message": message}


observe, inject_faults = fault_middlewares(WORLD, _cloud_error, _HTML_PAGE)
throttle = throttle_middleware(WORLD, lambda r: _authorization(r)[1], _cloud_error, dumps)


def make_cloud_app(world: World) -> web.Application:
    """An aiohttp application serving `world` as the Sequentum Cloud API v1."""
    app = web.Application(middlewares=[observe, inject_faults, guard, throttle])
    app[WORLD] = world
    agent = API + "/agent/{agentId}"
    run = agent + "/run/{runId}"
    app.router.add_get(API + "/agent/all", list_agents)
    app.router.add_get(agent, get_agent)
    app.router.add_get(agent + "/runs", list_runs)
    app.router.add_post(agent + "/start", start_agent)
    app.router.add_get(agent + "/versions", list_versions)
    app.router.add_post(agent + "/version/{versionNumber}/restore", restore_version)
    app.router.add_get(run + "/status", run_status)
    app.router.add_post(run + "/stop", stop_run)
    app.router.add_get(run + "/files", list_files)
    app.router.add_get(run + "/file/{fileId}/download", download_file)
    app.router.add_get(API + "/analytics/agents/{agentId}/runs/{runId}/diagnostics", diagnostics)
    return app
