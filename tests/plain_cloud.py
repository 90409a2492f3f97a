"""A deliberately small Sequentum Cloud, written by hand from the API documents alone (the
seeds 000–002 and DESIGN.md "Request budget and change hints"), to hold the product to
the platform rather than to our own simulator.

It imports nothing of `watcher` or `watcher_sim` (tests/test_house.py checks), so a
misreading shared by the product and the simulator shows here. Its state is plain dicts the
test edits directly, its clock the test's:

    cloud.agents[7] = {"id": 7, "name": "prices", "created": <datetime>}
    cloud.runs[7] = [{"id": 1, "status": 10, "startTime": <datetime>, "endTime": ...,
                      "dataCount": 1000, "errorCount": 0}]
    cloud.schedules = [{"scheduleId": 1, "agentId": 7, "scheduleName": "daily",
                        "nextRunTime": <datetime>, "timezone": "UTC", "isEnabled": True}]

Served:
- every request needs `Authorization: ApiKey <key>` (401 otherwise);
- `GET /api/v1/agent/all`: a plain list (seed 002), or with `pageIndex` (from 1) and
  `recordsPerPage` (at most 100) one page `{"agents", "totalRecordCount"}`, sorted by
  `sortColumn` (`created`, `lastActivity`, `name`) in `sortOrder` (0 ascending, 1
  descending). An agent's `status` is its last run's status (null if it never ran), its
  `lastActivity` the newest start or end of its runs;
- `GET /api/v1/agent/{id}/runs?maxRecords=N` (default 50): its runs, newest first;
- `GET /api/v1/analytics/schedules/upcoming`: the schedules whose `nextRunTime` is still
  ahead, enabled or not, each with `isEnabled`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

MOST_PER_PAGE = 100
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def stamp(value: Any) -> Any:
    """A datetime as the platform writes it ("2024-12-18T13:08:49.748151Z"); others as is."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def bad(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f'{{"message": "{reason}"}}', content_type="application/json")


@dataclass
class PlainCloud:
    now: Callable[[], datetime]
    api_key: str
    agents: dict[int, dict[str, Any]] = field(default_factory=dict)
    runs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    """Every request that passed the auth check, as path and query."""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api/v1/agent/all", self._agent_all)
        app.router.add_get("/api/v1/agent/{agent_id:\\d+}/runs", self._runs)
        app.router.add_get("/api/v1/analytics/schedules/upcoming", self._upcoming)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"ApiKey {self.api_key}":
            raise web.HTTPUnauthorized(
                text='{"message": "Unauthorized"}', content_type="application/json"
            )
        self.asked.append(request.path_qs)
        return await handler(request)

    # --- what the platform derives from its state --------------------------------------------

    def newest_first(self, agent_id: int) -> list[dict[str, Any]]:
        """An agent's runs in descending order of execution time (seed 002), a run not
        started yet by when it was created; the higher id first on a tie."""

        def when(run: dict[str, Any]) -> tuple[datetime, int]:
            at = run.get("startTime") or run.get("created") or datetime.min.replace(tzinfo=UTC)
            return at, run["id"]

        return sorted(self.runs.get(agent_id, []), key=when, reverse=True)

    def last_activity(self, agent_id: int) -> datetime | None:
        times = [
            run[key]
            for run in self.runs.get(agent_id, [])
            for key in ("startTime", "endTime")
            if run.get(key) is not None
        ]
        return max(times, default=None)

    def agent(self, agent_id: int) -> dict[str, Any]:
        runs = self.newest_first(agent_id)
        return {
            **{key: stamp(value) for key, value in self.agents[agent_id].items()},
            "status": runs[0]["status"] if runs else None,
            "lastActivity": stamp(self.last_activity(agent_id)),
        }

    def run(self, agent_id: int, run: dict[str, Any]) -> dict[str, Any]:
        start, end = run.get("startTime"), run.get("endTime")
        derived: dict[str, Any] = {
            "configId": agent_id,
            "configName": self.agents[agent_id].get("name"),
            "created": start,
            "runTimeSec": round((end - start).total_seconds()) if start and end else None,
        }
        return {key: stamp(value) for key, value in {**derived, **run}.items()}

    def schedule(self, item: dict[str, Any]) -> dict[str, Any]:
        name = self.agents.get(item["agentId"], {}).get("name")
        return {key: stamp(value) for key, value in {"agentName": name, **item}.items()}

    # --- the endpoints ------------------------------------------------------------------------

    async def _agent_all(self, request: web.Request) -> web.Response:
        query = request.query
        if "pageIndex" not in query:
            return web.json_response([self.agent(a) for a in sorted(self.agents)])
        try:
            page = int(query["pageIndex"])
            per_page = min(int(query.get("recordsPerPage", MOST_PER_PAGE)), MOST_PER_PAGE)
            descending = int(query.get("sortOrder", 0)) == 1
        except ValueError:
            raise bad("pageIndex, recordsPerPage and sortOrder are integers") from None
        if page < 1 or per_page < 1:
            raise bad("pageIndex and recordsPerPage start at 1")
        column = query.get("sortColumn", "created")
        if column not in ("created", "lastActivity", "name"):
            raise bad(f"cannot sort by {column}")
        agents = [self.agent(a) for a in sorted(self.agents)]  # ties stay in id order
        never = [a for a in agents if a.get(column) is None]  # as the oldest: never active
        dated = sorted((a for a in agents if a.get(column) is not None),
                       key=lambda a: a[column], reverse=descending)  # fmt: skip
        ordered = never + dated if not descending else dated + never
        first = (page - 1) * per_page
        return web.json_response(
            {"agents": ordered[first : first + per_page], "totalRecordCount": len(agents)}
        )

    async def _runs(self, request: web.Request) -> web.Response:
        agent_id = int(request.match_info["agent_id"])
        if agent_id not in self.agents:
            raise web.HTTPNotFound(text='{"message": "Agent not found"}',
                                   content_type="application/json")  # fmt: skip
        try:
            most = int(request.query.get("maxRecords", 50))
        except ValueError:
            raise bad("maxRecords is an integer") from None
        runs = self.newest_first(agent_id)[: max(most, 0)]
        return web.json_response([self.run(agent_id, r) for r in runs])

    async def _upcoming(self, request: web.Request) -> web.Response:
        now = self.now()
        ahead = [s for s in self.schedules if s["nextRunTime"] >= now]
        return web.json_response([self.schedule(s) for s in ahead])
