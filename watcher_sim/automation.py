"""The automation-runs API (seed 003) served over an `AutomationWorld`, FastAPI-style.

Routes: list (`status`, `limit` ≤ 1000 default 100, `offset` ≥ 0 → `{items, total}`, newest
first), get, cancel, retry (`{mode, stepKey}`), steps. Auth: `X-API-Key`, or
`Authorization: Bearer`, or the `vai_token` cookie; without one the answer is 401
`{"detail": "Not authenticated"}`. A bad parameter is 422 with FastAPI's
`{"detail": [{"loc", "msg", "type"}]}`; other errors are `{"detail": "…"}`. The event stream
(`GET …/{id}/events`) is not simulated.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from watcher_sim.automation_world import (
    RUN_FIELDS,
    STEP_FIELDS,
    AutomationWorld,
    AutoRun,
)
from watcher_sim.faults import dumps, fault_middlewares
from watcher_sim.model import SimConflict, SimNotFound
from watcher_sim.ratelimit import throttle_middleware
from watcher_sim.statuses import AUTOMATION_RETRY_MODES

AUTOMATION = web.AppKey("automation_world", AutomationWorld)
API = "/api/v1/automation-runs"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


class Invalid(Exception):
    """A request that fails validation: FastAPI's 422 `detail` list."""

    def __init__(self, *errors: dict[str, Any]) -> None:
        super().__init__("validation error")
        self.errors = list(errors)


# ------------------------------------------------------------------ JSON shapes


def iso(value: datetime | None) -> str | None:
    """`2019-08-24T14:15:22.123456Z`."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _pick(obj: object, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(obj, name)
        out[name] = iso(value) if isinstance(value, datetime) else value
    return out


def run_json(run: AutoRun) -> dict[str, Any]:
    return _pick(run, RUN_FIELDS)


def steps_json(run: AutoRun) -> dict[str, Any]:
    counts = {s: sum(1 for x in run.steps if x.status == s) for s in ("succeeded", "failed")}
    return {
        "automationRunId": run.id,
        "completedCount": counts["succeeded"],
        "failedCount": counts["failed"],
        "pendingCount": sum(1 for x in run.steps if x.status == "pending"),
        "runningCount": sum(1 for x in run.steps if x.status == "running"),
        "steps": [_pick(s, STEP_FIELDS) for s in run.steps],
    }


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def _int_query(request: web.Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(
            {
                "type": "int_parsing",
                "loc": ["query", name],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": raw,
            }
        ) from None
    if value < low:
        raise Invalid(_bound(name, raw, "greater_than_equal", f"greater than or equal to {low}"))
    if high is not None and value > high:
        raise Invalid(_bound(name, raw, "less_than_equal", f"less than or equal to {high}"))
    return value


def _bound(name: str, raw: str, kind: str, text: str) -> dict[str, Any]:
    return {"type": kind, "loc": ["query", name], "msg": f"Input should be {text}", "input": raw}


def _run_id(request: web.Request) -> str:
    raw = request.match_info["run_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise Invalid(
            {
                "type": "uuid_parsing",
                "loc": ["path", "run_id"],
                "msg": "Input should be a valid UUID, invalid character: expected an optional "
                "prefix of `urn:uuid:` followed by [0-9a-fA-F-]",
                "input": raw,
            }
        ) from None


# --------------------------------------------------------------------- handlers


async def list_runs(request: web.Request) -> web.Response:
    """GET /api/v1/automation-runs?status=&limit=&offset= → `{items, total}`."""
    world = request.app[AUTOMATION]
    limit = _int_query(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_query(request, "offset", 0, 0, None)
    runs = world.listing(request.query.get("status") or None)
    return _json(
        {"items": [run_json(r) for r in runs[offset : offset + limit]], "total": len(runs)}
    )


async def get_run(request: web.Request) -> web.Response:
    return _json(run_json(request.app[AUTOMATION].run(_run_id(request))))


async def cancel_run(request: web.Request) -> web.Response:
    return _json(run_json(request.app[AUTOMATION].cancel(_run_id(request))))


async def retry_run(request: web.Request) -> web.Response:
    """POST …/{id}/retry `{"mode": "from_failed"|"from_step"|"full", "stepKey": …}`."""
    run_id = _run_id(request)
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise Invalid(
            {"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}
        ) from None
    if not isinstance(body, dict):
        raise Invalid(
            {"type": "model_attributes_type", "loc": ["body"], "msg": "Input should be an object"}
        )
    mode = body.get("mode", "from_failed")
    if mode not in AUTOMATION_RETRY_MODES:
        raise Invalid(
            {
                "type": "literal_error",
                "loc": ["body", "mode"],
                "msg": "Input should be 'from_failed', 'from_step' or 'full'",
                "input": mode,
            }
        )
    step_key = body.get("stepKey")
    new = request.app[AUTOMATION].retry(
        run_id, mode, step_key if isinstance(step_key, str) else None
    )
    return _json(run_json(new))


async def run_steps(request: web.Request) -> web.Response:
    return _json(steps_json(request.app[AUTOMATION].run(_run_id(request))))


# ------------------------------------------------------------------ middlewares


def credential(request: web.Request) -> str | None:
    """The valid credential a request carries (X-API-Key, Bearer token or the vai_token
    cookie, tried in that order), or None."""
    world = request.app[AUTOMATION]
    key = request.headers.get("X-API-Key")
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    cookie = request.cookies.get("vai_token")
    if key is not None and key in world.api_keys:
        return key
    if scheme.lower() == "bearer" and token.strip() in world.bearer_tokens:
        return token.strip()
    if cookie is not None and cookie in world.bearer_tokens:
        return cookie
    return None


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """X-API-Key, Bearer or the vai_token cookie; errors in FastAPI's shapes."""
    if credential(request) is None:
        _, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        if "X-API-Key" not in request.headers and not token and "vai_token" not in request.cookies:
            return _json({"detail": "Not authenticated"}, 401)
        return _json({"detail": "Invalid authentication credentials"}, 401)
    try:
        return await handler(request)
    except Invalid as exc:
        return _json({"detail": exc.errors}, 422)
    except SimNotFound as exc:
        return _json({"detail": str(exc)}, 404)
    except SimConflict as exc:
        return _json({"detail": str(exc)}, 409)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json({"detail": exc.reason}, exc.status)


def _detail(status: int, message: str) -> dict[str, Any]:
    return {"detail": message}


_HTML_PAGE = """<!DOCTYPE html>
<html><head><title>502 Bad Gateway</title></head>
<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>
"""

observe, inject_faults = fault_middlewares(AUTOMATION, _detail, _HTML_PAGE)
throttle = throttle_middleware(AUTOMATION, lambda r: credential(r) or "", _detail, dumps)


def make_automation_app(world: AutomationWorld) -> web.Application:
    """An aiohttp application serving `world` as the automation-runs API."""
    app = web.Application(middlewares=[observe, inject_faults, guard, throttle])
    app[AUTOMATION] = world
    app.router.add_get(API, list_runs)
    app.router.add_get(API + "/{run_id}", get_run)
    app.router.add_post(API + "/{run_id}/cancel", cancel_run)
    app.router.add_post(API + "/{run_id}/retry", retry_run)
    app.router.add_get(API + "/{run_id}/steps", run_steps)
    return app
