"""How the simulated Sequentum Cloud writes its JSON and reads its parameters.

Shared by the route modules (`cloud`, `cloud_agents`, `cloud_analytics`): timestamps as the
API writes them, a run's status as an integer or a name, the error body
`{statusCode, statusDescription, message}`, and the 400 answers for malformed parameters.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from watcher_sim.faults import dumps, phrase
from watcher_sim.model import RUN_FIELDS, SimRun
from watcher_sim.statuses import CLOUD_NAMES
from watcher_sim.world import World

WORLD = web.AppKey("world", World)
API = "/api/v1"


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


def pick(obj: object, names: tuple[str, ...]) -> dict[str, Any]:
    """The named attributes of `obj` as JSON values (datetimes written by `iso`)."""
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
    out = pick(run, RUN_FIELDS)
    out["status"] = status_value(run, world)
    return out


def reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def cloud_error(status: int, message: str) -> dict[str, Any]:
    return {"statusCode": status, "statusDescription": phrase(status), "message": message}


def error_response(status: int, message: str) -> web.Response:
    """An error in the Cloud's own shape."""
    return reply(cloud_error(status, message), status)


# ------------------------------------------------------------------ parameters


def path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, f"The value '{raw}' is not valid for {name}.")
    return int(raw)


def query_int(request: web.Request, name: str, default: int, minimum: int = 0) -> int:
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


def query_time(request: web.Request, name: str, *, end_of_day: bool = False) -> datetime | None:
    """An ISO 8601 date or date-time parameter, as UTC. A bare date means its start, or with
    `end_of_day` (an endDate) the end of that day: a range of dates includes both."""
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime.combine(day, time(), UTC)
            return start + timedelta(days=1, microseconds=-1) if end_of_day else start
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"The value '{raw}' is not valid for {name}.") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; {} when empty."""
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
