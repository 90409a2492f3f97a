"""Sequentum Cloud API v1 (seeds 000–002).

- Auth: `Authorization: ApiKey <key>`, or `Bearer <token>` with `auth = "bearer"`.
- Agents: the configured ids, or `["*"]` for every agent from `GET /api/v1/agent/all`, which
  answers a plain list, or `{agents, totalRecordCount}` pages when asked with
  `pageIndex`/`recordsPerPage`.
- Runs: `GET /api/v1/agent/{id}/runs?maxRecords=N`, newest first; `status` is an integer 0–12
  or a string name, mapped by `watcher.status.cloud_status`.
"""

from __future__ import annotations

from typing import Any

from watcher.errors import SourceProtocolError
from watcher.models import Agent, Counts, RunSnapshot, parse_iso
from watcher.sources.base import CheckResult, Source
from watcher.status import cloud_status

PAGE_SIZE = 500
MAX_PAGES = 1000


class SequentumCloud(Source):
    kind = "sequentum_cloud"

    def auth_headers(self) -> dict[str, str]:
        scheme = "Bearer" if self.config.auth == "bearer" else "ApiKey"
        return {"Authorization": f"{scheme} {self.config.secret()}"}

    async def agents(self) -> list[Agent]:
        if self.config.agents != ["*"]:
            return [Agent(id=str(a)) for a in self.config.agents]
        return await self._all_agents()

    async def _all_agents(self) -> list[Agent]:
        """Every agent, paging when the server pages.

        Whether `pageIndex` counts from 0 or 1 is not documented: pages are read from 1 on,
        and if they run out before `totalRecordCount` is reached, page 0 is read as well.
        """
        found: dict[str, Agent] = {}
        total: int | None = None
        for page in range(1, MAX_PAGES + 1):
            items, total = await self._agent_page(page)
            before = len(found)
            self._collect(items, found)
            if total is None or len(found) >= total or len(found) == before:
                break
        if total is not None and len(found) < total:
            items, _ = await self._agent_page(0)
            self._collect(items, found)
        return list(found.values())

    async def _agent_page(self, page: int) -> tuple[list[Any], int | None]:
        """One page of /agent/all: its items and the total, or (everything, None) unpaged."""
        data = await self.get(
            "/api/v1/agent/all",
            params={
                "pageIndex": page,
                "recordsPerPage": PAGE_SIZE,
                "sortColumn": "lastActivity",
                "sortOrder": 1,
            },
        )
        if isinstance(data, list):  # the server does not page: this is everything
            return data, None
        if isinstance(data, dict) and isinstance(data.get("agents"), list):
            total = data.get("totalRecordCount")
            valid = isinstance(total, int) and not isinstance(total, bool)
            return data["agents"], total if valid else None
        raise SourceProtocolError(
            self.name, "GET /api/v1/agent/all: expected a list or {agents, totalRecordCount}"
        )

    def _collect(self, items: list[Any], found: dict[str, Agent]) -> None:
        for item in items:
            agent = self._agent(item)
            if agent is not None:
                found.setdefault(agent.id, agent)

    def _agent(self, item: Any) -> Agent | None:
        if not isinstance(item, dict):
            self.warn_once("*", "agent entry is not an object")
            return None
        agent_id = _id(item.get("id"))
        if agent_id is None:
            self.warn_once("*", "agent without a usable id")
            return None
        return Agent(id=agent_id, name=_text(item.get("name")))

    async def runs(self, agent: Agent) -> list[RunSnapshot]:
        path = f"/api/v1/agent/{agent.id}/runs"
        data = await self.get(
            path, params={"maxRecords": self.config.max_records}, agent_id=agent.id
        )
        return self.parse_runs(agent, data, path)

    def parse_runs(self, agent: Agent, data: Any, path: str) -> list[RunSnapshot]:
        """Snapshots from a runs listing (newest first on the wire, oldest first here).
        A listing of the wrong shape is a protocol error; an unreadable entry is skipped."""
        if isinstance(data, dict):  # tolerate an envelope around the list
            data = next((data[k] for k in ("runs", "items", "data") if k in data), data)
        if not isinstance(data, list):
            raise SourceProtocolError(
                self.name,
                f"GET {path}: expected a list of runs, got {type(data).__name__}",
                agent_id=agent.id,
            )
        snaps = (self._snapshot(agent, item) for item in data)
        return [s for s in reversed(list(snaps)) if s is not None]

    def _snapshot(self, agent: Agent, item: Any) -> RunSnapshot | None:
        if not isinstance(item, dict):
            self.warn_once(agent.id, "run entry is not an object")
            return None
        run_id = _id(item.get("id"))
        if run_id is None:
            self.warn_once(agent.id, "run without a usable id")
            return None
        info = cloud_status(item.get("status"))
        started, ended = parse_iso(item.get("startTime")), parse_iso(item.get("endTime"))
        duration = _number(item.get("runTimeSec"))
        if duration is None and started and ended:
            duration = max(0.0, (ended - started).total_seconds())
        name = _text(item.get("configName")) or agent.name
        return RunSnapshot(
            source=self.name,
            agent_id=agent.id,
            run_id=run_id,
            status=info.status,
            status_code=info.status_code,
            phase=info.phase,
            outcome=info.outcome,
            with_errors=info.with_errors,
            agent_name=name,
            started_at=started,
            ended_at=ended,
            duration_s=duration,
            counts=Counts(
                pages=_count(item.get("pageCount")),
                records=_count(item.get("dataCount")),
                errors=_count(item.get("errorCount")),
                requests=_count(item.get("requestCount")),
                exported=_count(item.get("exportCount")),
            ),
            message=_text(item.get("message")),
            url=self.run_url(agent.id, run_id, name),
        )

    async def check(self) -> list[CheckResult]:
        if self.config.agents == ["*"]:
            return await super().check()
        lines = []
        for agent_id in self.config.agents:
            data = await self.get(f"/api/v1/agent/{agent_id}", agent_id=str(agent_id))
            name = _text(data.get("name")) if isinstance(data, dict) else None
            lines.append(CheckResult(True, f"agent {agent_id} ({name or 'unnamed'}) found"))
        return lines


def _id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= 128:
        return value.strip()
    return None


def _text(value: Any, limit: int = 2000) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if 0 <= number < 1e12 else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value < 2**53 else None
