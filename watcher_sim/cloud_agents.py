"""The simulated Cloud's agents: the `/agent/all` listing with its change hints, filters, sort
and pages, one agent, and an agent's schedules.

An agent's `status` is its last run's status and `lastActivity` the last time any of its runs
changed, worked out from the world's runs on every request (so never stale), or null for every
agent when the world gives no hints. `/agent/all` filters by `status`, `spaceId`, `name` and
`configType`, sorts by `sortColumn` (`name`, `lastActivity`, `created`, `updated`, `status`,
`configType`) in `sortOrder` (0 ascending, 1 descending; no value last), and pages when asked
with `pageIndex` (1-based) or `recordsPerPage` (at most 100: the vendor's client never asks
more, and its docs call 100 the maximum; a larger number is cut to it), answering
`{agents, totalRecordCount}`; otherwise it answers the plain list.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from watcher_sim.cloud_wire import (
    WORLD,
    iso,
    path_int,
    pick,
    query_int,
    reply,
    status_value,
)
from watcher_sim.model import AGENT_FIELDS, SCHEDULE_FIELDS, SimAgent, SimSchedule
from watcher_sim.statuses import SCHEDULE_TYPE_NAMES
from watcher_sim.world import World

DEFAULT_RECORDS_PER_PAGE = 50


def hints(agent: SimAgent, world: World) -> tuple[int | str | None, datetime | None]:
    """The agent's (status, lastActivity): its last run's status as the API sends statuses,
    and when any of its runs last changed; (None, None) when the world gives no hints."""
    if not world.hints:
        return None, None
    last = world.last_run(agent.id)
    status = status_value(last, world) if last is not None else None
    return status, world.last_activity(agent.id)


def agent_json(agent: SimAgent, world: World) -> dict[str, Any]:
    status, activity = hints(agent, world)
    computed = {"status": status, "lastActivity": iso(activity)}
    out: dict[str, Any] = {}
    for name in AGENT_FIELDS:
        if name in computed:
            out[name] = computed[name]
        else:
            value = getattr(agent, name)
            out[name] = iso(value) if isinstance(value, datetime) else value
    return out


def _sort_key(column: str, world: World) -> Callable[[SimAgent], Any] | None:
    """What agents are sorted by for a `sortColumn`; None for a column that does not sort."""
    if column == "name":
        return lambda a: a.name.casefold()
    if column == "lastActivity":
        return lambda a: hints(a, world)[1]
    if column == "status":
        return lambda a: _status_code(a, world)
    if column in ("created", "updated", "configType"):
        return lambda a: getattr(a, column)
    return None


def _status_code(agent: SimAgent, world: World) -> int | None:
    last = world.last_run(agent.id) if world.hints else None
    return int(last.status) if last is not None else None


def _matches(request: web.Request, world: World) -> Callable[[SimAgent], bool]:
    """The filters of the query, as one predicate."""
    query = request.query
    status = query.get("status", "").strip()
    space = query_int(request, "spaceId", 0) if query.get("spaceId") else None
    name = query.get("name", "").strip().casefold()
    config = query.get("configType", "").strip().casefold()

    def keep(agent: SimAgent) -> bool:
        if space is not None and agent.spaceId != space:
            return False
        if name and name not in agent.name.casefold():
            return False
        if config and str(agent.configType).casefold() != config:
            return False
        if status:
            served = hints(agent, world)[0]
            return served is not None and str(served).casefold() == status.casefold()
        return True

    return keep


async def list_agents(request: web.Request) -> web.Response:
    """GET /agent/all: the agents the query selects, sorted and paged as it asks (see the
    module's docstring). pageIndex 0 is accepted as the first page too, unless
    `world.page_base` is 0, which makes the server count pages from 0."""
    world = request.app[WORLD]
    agents = [a for a in world.agents.values() if _matches(request, world)(a)]
    key = _sort_key(request.query.get("sortColumn", ""), world)
    if key is not None:
        descending = query_int(request, "sortOrder", 0) == 1
        valued = [(key(a), a) for a in agents]
        present = [(v, a) for v, a in valued if v is not None]
        present.sort(key=lambda pair: pair[0], reverse=descending)  # stable: ties keep id order
        agents = [a for _, a in present] + [a for v, a in valued if v is None]
    if "pageIndex" not in request.query and "recordsPerPage" not in request.query:
        return reply([agent_json(a, world) for a in agents])
    base = world.page_base
    page = max(query_int(request, "pageIndex", base), base) - base + 1
    size = query_int(request, "recordsPerPage", DEFAULT_RECORDS_PER_PAGE, minimum=1)
    if world.max_page_size is not None:
        size = min(size, world.max_page_size)
    chosen = agents[(page - 1) * size : page * size]
    return reply(
        {world.page_key: [agent_json(a, world) for a in chosen], "totalRecordCount": len(agents)}
    )


async def get_agent(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    return reply(agent_json(world.agent(path_int(request, "agentId")), world))


_STORED_SCHEDULE_FIELDS = tuple(
    f
    for f in SCHEDULE_FIELDS
    if f not in ("schedule", "localSchedule", "scheduleType", "runEveryCount", "runEveryPeriod")
)


def schedule_json(schedule: SimSchedule, world: World) -> dict[str, Any]:
    """A schedule as the API shows it; `schedule` is the cron expression of a CRON schedule
    and `scheduleType` a number (its name when the world sends enums as names)."""
    out = pick(schedule, _STORED_SCHEDULE_FIELDS)
    recurrence = schedule.recurrence
    count, period = recurrence.every_count_and_period()
    kind = recurrence.kind
    out.update(
        schedule=recurrence.cron,
        localSchedule=recurrence.cron,
        scheduleType=SCHEDULE_TYPE_NAMES[kind] if world.status_as_string else int(kind),
        runEveryCount=count,
        runEveryPeriod=int(period) if period is not None else None,
    )
    return {name: out[name] for name in SCHEDULE_FIELDS}


async def agent_schedules(request: web.Request) -> web.Response:
    """GET /agent/{id}/schedules: the agent's schedules (a list, possibly empty)."""
    world = request.app[WORLD]
    schedules = world.agent_schedules(path_int(request, "agentId"))
    return reply([schedule_json(s, world) for s in schedules])
