"""Sequentum Cloud API v1 (seeds 000–002).

- Auth: `Authorization: ApiKey <key>`, or `Bearer <token>` with `auth = "bearer"`.
- Agents: the configured ids, or `["*"]` for every agent from `GET /api/v1/agent/all`, which
  answers a plain list, or `{agents, totalRecordCount}` pages (`items` on one doc page) when
  asked with `pageIndex`/`recordsPerPage` (at most 100).
- Change hints: `/agent/all?sortColumn=lastActivity&sortOrder=1` lists the most recently
  active agents first, each with `status` (its last run's status) and `lastActivity` (when any
  of its runs last changed). `hints()` reads it page by page only as far as agents are newer
  than the last read, so one request usually tells which of a thousand agents have news.
- Runs: `GET /api/v1/agent/{id}/runs?maxRecords=N`, newest first; `status` is an integer 0–12
  or a string name, mapped by `watcher.status.cloud_status`.
- Outputs: `GET /api/v1/agent/{id}/run/{runId}/files` lists a run's files (`fileType` 1 data,
  6 log); each downloads from `.../run/{runId}/file/{fileId}/download`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog

from watcher.codec import parse_iso
from watcher.config.kinds import KindRules
from watcher.errors import SourceError, SourceProtocolError
from watcher.events import Event, with_data
from watcher.runs import Agent, Counts, Hint, Outcome, RunSnapshot, snapshot
from watcher.sources.base import CheckResult, Hints, RunFile, ScheduledStart, Source
from watcher.sources.fields import as_count as _count
from watcher.sources.fields import as_id as _id
from watcher.sources.fields import as_number as _number
from watcher.sources.fields import as_text as _text
from watcher.sources.http import Unchanged
from watcher.status import cloud_status

log = structlog.get_logger("watcher.source")

PAGE_SIZE = 100
"""Agents per page of /agent/all: the most the platform serves in one."""
MAX_PAGES = 1000
PAGES_AT_ONCE = 10
"""Pages of the whole agent listing read at once (each still takes its slot of the budget)."""
WHOLE_ORDER: dict[str, str | int] = {"sortColumn": "created", "sortOrder": 0}
"""The whole listing, oldest agent first: an order that activity does not change, so no agent
moves from a page not read yet to one already read (most recently active first, it would)."""
NEWS_ORDER: dict[str, str | int] = {"sortColumn": "lastActivity", "sortOrder": 1}
"""The listing read as far as it changed: most recently active first."""


def parse_agent_id(item: object) -> str | None:
    """A Sequentum Cloud agent id (an int, or a string of digits) as text, None if it is not one."""
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return str(item) if item > 0 else None
    if isinstance(item, str) and _is_number(item.strip()) and int(item) > 0:
        return str(int(item))
    return None


class SequentumCloud(Source):
    rules = KindRules(
        name="sequentum_cloud",
        parse_agent=parse_agent_id,
        agent_complaint="must be a positive integer agent id",
        auth_schemes=("apikey", "bearer"),
        requests_per_minute=90,  # the platform allows 100 a minute per key: room for scripts
        keys=("use_hints",),
    )
    has_outputs = True
    _first_page = 1

    def auth_headers(self) -> dict[str, str]:
        scheme = "Bearer" if self.config.auth == "bearer" else "ApiKey"
        return {"Authorization": f"{scheme} {self.config.secret()}"}

    async def agents(self) -> list[Agent]:
        if not self.config.watches_all:
            return [Agent(id=str(a)) for a in self.config.agents]
        listing = await self.hints(None, complete=True)
        return [agent for agent, _ in listing.agents]

    async def hints(self, watermark: datetime | None, *, complete: bool) -> Hints:
        """The agents with their change hints: every page with `complete` (oldest agent
        first), else most recently active first, pages until one ends with an agent whose last
        activity is older than `watermark` (the newest activity of the last read): what
        follows has not moved.

        Whether `pageIndex` counts from 0 or 1 is not documented: pages are read from 1 on,
        and if they run out before `totalRecordCount` is reached, page 0 is read as well (and
        remembered as the first page when it is a page of its own). A whole read that still
        falls short of the total says so (`Hints.whole`)."""
        found: dict[str, tuple[Agent, Hint]] = {}
        total, partial = await self._read_pages(found, None if complete else watermark)
        if partial:
            return Hints(self._wanted(found), complete=False)
        if total is not None and len(found) < total and self._first_page == 1:
            await self._read_page_zero(found)
        whole = total is None or len(found) >= total
        return Hints(self._wanted(found), complete=True, whole=whole)

    async def _read_pages(
        self, found: dict[str, tuple[Agent, Hint]], watermark: datetime | None
    ) -> tuple[int | None, bool]:
        """Pages from the first on, into `found`, until the total is reached or a page adds
        nobody — or, with a `watermark`, until a page ends with an agent older than it.
        Without one (the whole listing) the pages after the first are read at once, as its
        total says how many there are. Returns the total the platform gave, and whether the
        watermark stopped the read."""
        order = WHOLE_ORDER if watermark is None else NEWS_ORDER
        items, total = await self._agent_page(self._first_page, order)
        entries = self._add(found, items)
        if watermark is None and total is not None:
            await self._read_the_rest(found, total, per_page=len(items))
            return total, False
        page = self._first_page
        for _ in range(MAX_PAGES - 1):
            if total is None or len(found) >= total or not entries:
                break
            if watermark is not None and _older(entries[-1][1], watermark):
                return total, True
            page += 1
            before = len(found)
            items, total = await self._agent_page(page, order)
            entries = self._add(found, items)
            if len(found) == before:
                break
        return total, False

    async def _read_the_rest(
        self, found: dict[str, tuple[Agent, Hint]], total: int, *, per_page: int
    ) -> None:
        """The pages after the first, `PAGES_AT_ONCE` at a time, until the total is reached
        or a batch adds nobody (a total that overstates does not cost a request a page).
        `per_page`: as many as the first page had (a platform may serve fewer than asked)."""
        page = self._first_page + 1
        count = math.ceil(total / max(1, min(per_page, PAGE_SIZE)))
        last = self._first_page + min(count, MAX_PAGES) - 1
        while len(found) < total and page <= last:
            batch = range(page, min(page + PAGES_AT_ONCE, last + 1))
            before = len(found)
            pages = await asyncio.gather(
                *(self._agent_page(p, WHOLE_ORDER) for p in batch), return_exceptions=True
            )  # each page read to its end, so none is left running when one fails
            for answer in pages:  # in page order: an agent on two pages keeps the first
                if isinstance(answer, BaseException):
                    raise answer
                self._add(found, answer[0])
            if len(found) == before:
                break
            page = batch.stop

    def _add(self, found: dict[str, tuple[Agent, Hint]], items: list[Any]) -> list[Any]:
        """Take one page's agents into `found` (those already there stay); its entries."""
        entries = self._entries(items)
        for agent, hint in entries:
            found.setdefault(agent.id, (agent, hint))
        return entries

    async def _read_page_zero(self, found: dict[str, tuple[Agent, Hint]]) -> None:
        """Pages from 1 on fell short of the total: page 0 too. It is the first page of a
        platform that counts from 0 when none of its agents were on the others (a platform
        that counts from 1 may answer page 0 as page 1); its new agents are taken either way."""
        before = len(found)
        entries = self._add(found, (await self._agent_page(0, WHOLE_ORDER))[0])
        if entries and len(found) - before == len(entries):
            self._first_page = 0

    def _wanted(self, found: dict[str, tuple[Agent, Hint]]) -> list[tuple[Agent, Hint]]:
        if self.config.watches_all:
            return list(found.values())
        return [found[a] for a in self.config.agents if a in found]

    async def _agent_page(
        self, page: int, order: dict[str, str | int]
    ) -> tuple[list[Any], int | None]:
        """One page of /agent/all in `order`: its items and the total, or (everything, None)
        when the platform does not page."""
        data = await self.get(
            "/api/v1/agent/all", params={"pageIndex": page, "recordsPerPage": PAGE_SIZE, **order}
        )
        if isinstance(data, list):  # the server does not page: this is everything
            return data, None
        items = data.get("agents", data.get("items")) if isinstance(data, dict) else None
        if isinstance(items, list):
            total = data.get("totalRecordCount")
            valid = isinstance(total, int) and not isinstance(total, bool)
            return items, total if valid else None
        raise SourceProtocolError(
            self.name, "GET /api/v1/agent/all: expected a list or {agents, totalRecordCount}"
        )

    def _entries(self, items: list[Any]) -> list[tuple[Agent, Hint]]:
        return [entry for entry in map(self._agent, items) if entry is not None]

    def _agent(self, item: Any) -> tuple[Agent, Hint] | None:
        if not isinstance(item, dict):
            self.warn_once("*", "agent entry is not an object")
            return None
        agent_id = _id(item.get("id"))
        if agent_id is None or not _is_number(agent_id):  # it goes into URL paths
            self.warn_once("*", "agent without a numeric id; skipped")
            return None
        raw = item.get("status")
        status = None if raw is None else str(raw)[:40]
        hint = Hint(
            status,
            parse_iso(item.get("lastActivity")),
            active=raw is not None and cloud_status(raw).phase.active,
        )
        return Agent(id=agent_id, name=_text(item.get("name"))), hint

    async def runs(self, agent: Agent) -> list[RunSnapshot]:
        runs = await self._runs(agent, skip_known=False)
        assert not isinstance(runs, Unchanged)
        return runs

    async def listing(self, agent: Agent) -> list[RunSnapshot] | Unchanged:
        return await self._runs(agent, skip_known=True)

    async def _runs(self, agent: Agent, *, skip_known: bool) -> list[RunSnapshot] | Unchanged:
        path = f"/api/v1/agent/{agent.id}/runs"
        data = await self.get(
            path,
            params={"maxRecords": self.config.max_records},
            agent_id=agent.id,
            fingerprint=agent.id if skip_known else None,
        )
        if isinstance(data, Unchanged):
            return data
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
        if run_id is None or not _is_number(run_id):  # it goes into URL paths
            self.warn_once(agent.id, "run without a numeric id; skipped")
            return None
        name = _text(item.get("configName")) or agent.name
        return snapshot(
            source=self.name,
            agent_id=agent.id,
            run_id=run_id,
            info=cloud_status(item.get("status")),
            agent_name=name,
            started=parse_iso(item.get("startTime")),
            ended=parse_iso(item.get("endTime")),
            duration=_number(item.get("runTimeSec")),
            counts=Counts(
                pages=_count(item.get("pageCount")),
                records=_count(item.get("dataCount", item.get("recordsExtracted"))),
                errors=_count(item.get("errorCount")),
                requests=_count(item.get("requestCount")),
                exported=_count(item.get("exportCount", item.get("recordsExported"))),
            ),
            message=_text(item.get("message")) or _text(item.get("errorMessage")),
            url=self.run_url(agent.id, run_id, name),
        )

    async def enrich(self, event: Event) -> Event:
        """A failed run's diagnostics: possible causes and suggested actions."""
        if not _diagnosable(event):
            return event
        path = f"/api/v1/analytics/agents/{event.agent_id}/runs/{event.run_id}/diagnostics"
        try:
            data = await self.get(path, agent_id=event.agent_id)
        except SourceError as err:  # not offered for this run, or not now: alert without it
            log.debug("no diagnostics", source=self.name, run_id=event.run_id, error=err.detail)
            return event
        found = _diagnostics(data)
        return with_data(event, diagnostics=found) if found else event

    async def schedules(self, agent_ids: Sequence[str]) -> list[ScheduledStart] | None:
        """Every agent's next scheduled runs, in one request (the analytics view)."""
        data = await self.get("/api/v1/analytics/schedules/upcoming")
        items = data.get("items", data.get("schedules")) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise SourceProtocolError(
                self.name, "GET /api/v1/analytics/schedules/upcoming: expected a list"
            )
        wanted = set(agent_ids)
        found = []
        for item in items:
            if not isinstance(item, dict) or item.get("isEnabled") is False:
                continue
            agent_id, at = _id(item.get("agentId")), parse_iso(item.get("nextRunTime"))
            if agent_id in wanted and at is not None:
                name = _text(item.get("scheduleName"), 200) or str(item.get("scheduleId"))
                found.append(ScheduledStart(agent_id, at, name))
        return found

    async def retry(self, agent_id: str, run_id: str) -> str | None:
        """Start the agent again — with its input parameters, as the run would have had them —
        and return the new run's id."""
        if not (_is_number(agent_id) and _is_number(run_id)):
            raise SourceProtocolError(self.name, "agent and run ids must be numbers")
        agent = await self.get(f"/api/v1/agent/{agent_id}", agent_id=agent_id)
        params = agent.get("inputParameters") if isinstance(agent, dict) else None
        body: dict[str, Any] = {}
        if params:  # the API takes them as a JSON string
            body["inputParameters"] = params if isinstance(params, str) else json.dumps(params)
        data = await self.post(f"/api/v1/agent/{agent_id}/start", body, agent_id=agent_id)
        return _id(data.get("id")) if isinstance(data, dict) else None

    async def outputs(self, agent_id: str, run_id: str) -> list[RunFile]:
        """The run's files from its file listing. Ids must be numeric: they go into URL paths,
        so anything else (from a hostile listing or a typo) is refused, never sent."""
        if not (_is_number(agent_id) and _is_number(run_id)):
            raise SourceProtocolError(
                self.name, "agent and run ids must be numbers", agent_id=agent_id
            )
        run = f"/api/v1/agent/{agent_id}/run/{run_id}"
        data = await self.get(f"{run}/files", agent_id=agent_id)
        if not isinstance(data, list):
            raise SourceProtocolError(
                self.name, f"GET {run}/files: expected a list of files", agent_id=agent_id
            )
        files = []
        for item in data:
            file_id = _id(item.get("id")) if isinstance(item, dict) else None
            if file_id is None or not _is_number(file_id):
                self.warn_once(agent_id, "file entry without a numeric id", run_id=run_id)
                continue
            file_type = _count(item.get("fileType"))
            files.append(
                RunFile(
                    file_id=file_id,
                    name=item.get("name") if isinstance(item.get("name"), str) else "",
                    path=f"{run}/file/{file_id}/download",
                    size=_count(item.get("fileSize")),
                    kind=_FILE_KINDS.get(file_type or 0, "other"),
                    file_type=file_type,
                    archive=str(item.get("name", "")).lower().endswith(".zip"),
                )
            )
        return files

    async def check(self) -> list[CheckResult]:
        """Auth, the agent listing (every configured agent in it; hints or none) and one
        agent's runs: a few requests, never one per agent (the budget is 100 a minute)."""
        listing = await self.hints(None, complete=True)
        self.hinted = any(hint.last_activity is not None for _, hint in listing.agents)
        found = {agent.id: agent for agent, _ in listing.agents}
        self.checked_agents = len(found)
        if self.config.watches_all:
            lines = [CheckResult(True, f"authenticated; {len(found)} agent(s) to watch")]
        else:
            wanted = len(self.config.agents)
            lines = [CheckResult(True, f"authenticated; {len(found)} of {wanted} agent(s) listed")]
            missing = [a for a in self.config.agents if a not in found]
            if missing:
                shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
                lines.append(CheckResult(False, f"not in the agent listing: {shown}"))
        if found:
            agent = next(iter(found.values()))
            runs = await self.runs(agent)
            label = f"{agent.name} ({agent.id})" if agent.name else agent.id
            lines.append(CheckResult(True, f"agent {label}: {len(runs)} recent run(s) readable"))
        return lines


_FILE_KINDS = {1: "data", 6: "log"}
"""Cloud `fileType` values (seed 002's listing): 1 a data export, 6 the run log."""


def _diagnosable(event: Event) -> bool:
    """A failed run, with ids that are numbers (they go into the URL path)."""
    if event.outcome is not Outcome.FAILURE or not event.run_id or not event.agent_id:
        return False
    return _is_number(event.agent_id) and _is_number(event.run_id)


def _diagnostics(data: Any) -> dict[str, Any]:
    """What a diagnostics answer says, in short: at most ten causes and ten actions, and
    the error message, each cut at 500 characters; nothing from an answer of another shape."""
    if not isinstance(data, dict):
        return {}
    found: dict[str, Any] = {}
    for key in ("possibleCauses", "suggestedActions"):
        items = data.get(key)
        if isinstance(items, list):
            texts = [t for t in (_text(i, 500) for i in items[:10]) if t]
            if texts:
                found[key] = texts
    message = _text(data.get("errorMessage"), 500)
    if message:
        found["errorMessage"] = message
    return found


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 20


def _older(hint: Hint, watermark: datetime) -> bool:
    """Did the agent last change before `watermark`? (Never: older than anything.)"""
    return hint.last_activity is None or hint.last_activity < watermark
