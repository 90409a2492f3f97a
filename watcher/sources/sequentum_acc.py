"""Sequentum Agent Control Center (ACC) API (seed 004).

- Auth: `Authorization: Bearer <api_key>` (the ACC access token).
- Agents: given by id (a GUID) or by repository path (`sequentum/Test2/quick`). A path is
  resolved with `GET /api/agent?agentPath=…` (`{agentId, name, directoryId, description}`),
  cached, and resolved again when the agent's history answers 404 (the agent was re-created).
  The ACC cannot list every agent, so there is no `"*"`. An agent keeps the identifier it was
  configured with as `agent_id` (a path stays a path, stable across re-creation); its GUID is
  then in the events' `acc_agent_id`.
- Runs: `GET /api/agent/{agentId}/history?count=N` (N = `max_records`), newest first; run
  statuses 0–7 mapped by `watcher.status.acc_run_status` (5 is *Failed*, not Cloud's Stopping).
  Times carry offsets (`+10:00`) and up to 7 fractional digits; `runTime` is a .NET TimeSpan.
- Jobs (`watch_jobs = true`): `GET /api/job/{agentId}/history?count=N`, job statuses 0–5 mapped
  by `acc_job_status`; a job run is a run of the same agent whose `run_id` is
  `job-<agentJobHistoryId>`, so it never collides with a run id. "In Progress With Failure" (2)
  sets the snapshot's `warning`, which the diff turns into one `run.warning` event.
- Run details: `GET /api/run/{id}` (statusMessage, errors, dataCount, logPath) for a run whose
  finish is news and whose listing entry has no statusMessage, after the diff (`enrich`). A
  details failure is logged once and never fails the poll.
- Outputs: a run's log and backup data, both zip files: `GET /api/run/{id}/log` and
  `/api/run/{id}/backup` (a job run: `/api/job/run/{id}/logs` and `/backup`, taking its
  agentJobHistoryId as the job run id). Backup data exists only where the agent or server is
  configured to keep it, so its 404 means "none".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from watcher.codec import parse_iso
from watcher.config.kinds import KindRules
from watcher.errors import SourceError, SourceProtocolError
from watcher.events import Event, with_data
from watcher.runs import Agent, Counts, Phase, RunSnapshot, snapshot
from watcher.sources.base import CheckResult, RunFile, ScheduledStart, Source
from watcher.sources.fields import as_count, as_id, as_text, parse_timespan
from watcher.status import acc_job_status, acc_run_status

if TYPE_CHECKING:
    from watcher.config import SourceConfig
    from watcher.sources.http import HttpClient

JOB_PREFIX = "job-"
"""Prefix of a job run's `run_id`: `job-<agentJobHistoryId>`."""

_GUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")


def parse_agent(item: object) -> str | None:
    """An Agent Control Center agent: its id (a GUID) or its repository path
    ("sequentum/Test2/quick"), as text; None if it is neither."""
    if not isinstance(item, str):
        return None
    text = item.strip()
    if _GUID.fullmatch(text):
        return text.lower()
    parts = text.strip("/").split("/")
    if len(parts) >= 2 and all(p.strip() for p in parts) and len(text) <= 400:
        return "/".join(p.strip() for p in parts)
    return None


class SequentumAcc(Source):
    rules = KindRules(
        name="sequentum_acc",
        parse_agent=parse_agent,
        agent_complaint="must be an agent id (a GUID) or a repository path like "
        '"sequentum/Test2/quick"',
        auth_schemes=("bearer",),
        wildcard=False,
        agents_required="agent ids or repository paths (the ACC API cannot list every agent, so "
        '"*" is not available)',
        keys=("watch_jobs",),
    )
    has_outputs = True

    def __init__(self, config: SourceConfig, http: HttpClient) -> None:
        super().__init__(config, http)
        self._resolved: dict[str, tuple[str, str | None]] = {}  # path → (GUID, name)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secret()}"}

    @property
    def history_depth(self) -> int:
        return self.config.max_records * (2 if self.config.watch_jobs else 1)

    @property
    def listing_cost(self) -> int:
        return 2 if self.config.watch_jobs else 1

    async def agents(self) -> list[Agent]:
        """The configured agents; a path's name is known once it has been resolved."""
        return [
            Agent(id=a, name=self._resolved[a][1] if a in self._resolved else None)
            for a in self.config.agents
        ]

    # ------------------------------------------------------------------ agents by path

    async def resolve(self, path: str, *, fresh: bool = False) -> tuple[str, str | None]:
        """The GUID and name of the agent at repository `path` (cached unless `fresh`)."""
        if not fresh and path in self._resolved:
            return self._resolved[path]
        data = await self.get("/api/agent", params={"agentPath": path}, agent_id=path)
        guid = as_id(data.get("agentId")) if isinstance(data, dict) else None
        if guid is None or not _GUID.fullmatch(guid):  # it goes into URL paths: nothing else
            raise SourceProtocolError(
                self.name,
                f"GET /api/agent?agentPath={path}: expected an object with a GUID agentId",
                agent_id=path,
            )
        self._resolved[path] = (guid, as_text(data.get("name")))
        return self._resolved[path]

    async def _target(self, agent_id: str, *, fresh: bool = False) -> tuple[str, str | None]:
        """The GUID (and name, when known) to call the API with for a configured agent."""
        if _is_path(agent_id):
            return await self.resolve(agent_id, fresh=fresh)
        return agent_id, None

    # ------------------------------------------------------------------------- runs

    async def runs(self, agent: Agent) -> list[RunSnapshot]:
        guid, name = await self._target(agent.id)
        try:
            history = await self._history(agent.id, guid)
        except SourceProtocolError as err:
            if err.http_status != 404 or not _is_path(agent.id):
                raise
            guid, name = await self._target(agent.id, fresh=True)  # re-created under the path
            history = await self._history(agent.id, guid)
        named = Agent(agent.id, name or agent.name)
        snaps = self.parse_runs(named, guid, history)
        if self.config.watch_jobs:
            path = f"/api/job/{guid}/history"
            jobs = await self.get(
                path, params={"count": self.config.max_records}, agent_id=agent.id
            )
            snaps.extend(self.parse_jobs(named, guid, jobs, path))
        return snaps

    async def _history(self, agent_id: str, guid: str) -> Any:
        path = f"/api/agent/{guid}/history"
        data = await self.get(path, params={"count": self.config.max_records}, agent_id=agent_id)
        return _listing(self.name, data, path, agent_id)

    def parse_runs(self, agent: Agent, guid: str, data: list[Any]) -> list[RunSnapshot]:
        """Snapshots from a run history (newest first on the wire, oldest first here)."""
        snaps = (self._run(agent, guid, item) for item in data)
        return [s for s in reversed(list(snaps)) if s is not None]

    def parse_jobs(self, agent: Agent, guid: str, data: Any, path: str) -> list[RunSnapshot]:
        """Snapshots of job runs from a job history, oldest first."""
        items = _listing(self.name, data, path, agent.id)
        snaps = (self._job(agent, guid, item) for item in items)
        return [s for s in reversed(list(snaps)) if s is not None]

    def _run(self, agent: Agent, guid: str, item: Any) -> RunSnapshot | None:
        if not isinstance(item, dict):
            self.warn_once(agent.id, "run entry is not an object")
            return None
        run_id = as_id(item.get("agentRunHistoryId"))
        if run_id is None:
            self.warn_once(agent.id, "run without a usable agentRunHistoryId")
            return None
        extra: dict[str, Any] = {}
        if as_text(item.get("logPath")):
            extra["log_path"] = as_text(item.get("logPath"))
        if guid != agent.id:
            extra["acc_agent_id"] = guid
        return snapshot(
            source=self.name,
            agent_id=agent.id,
            run_id=run_id,
            info=acc_run_status(item.get("status")),
            agent_name=agent.name,
            started=parse_iso(item.get("startTime")),
            ended=parse_iso(item.get("endTime")),
            duration=parse_timespan(item.get("runTime")),
            end_only_when_finished=True,
            counts=Counts(
                pages=as_count(item.get("pageLoadCount")),
                records=as_count(item.get("dataCount")),
                errors=as_count(item.get("errors")),
                requests=as_count(item.get("requestCount")),
            ),
            message=as_text(item.get("statusMessage")),
            url=self.run_url(agent.id, run_id, agent.name),
            extra=extra,
        )

    def _job(self, agent: Agent, guid: str, item: Any) -> RunSnapshot | None:
        if not isinstance(item, dict):
            self.warn_once(agent.id, "job entry is not an object")
            return None
        job_id = as_id(item.get("agentJobHistoryId"))
        if job_id is None:
            self.warn_once(agent.id, "job without a usable agentJobHistoryId")
            return None
        run_id = JOB_PREFIX + job_id
        info = acc_job_status(item.get("status"))
        done, total = as_count(item.get("completedRunCount")), as_count(item.get("totalRunCount"))
        message = f"{done} of {total} run(s) completed" if None not in (done, total) else None
        if info.warning:
            message = f"{info.status}" + (f": {message}" if message else "")
        extra: dict[str, Any] = {"job_run_id": as_count(item.get("runId"))}
        if guid != agent.id:
            extra["acc_agent_id"] = guid
        return snapshot(
            source=self.name,
            agent_id=agent.id,
            run_id=run_id,
            info=info,
            agent_name=agent.name,
            started=parse_iso(item.get("startTime")),
            ended=parse_iso(item.get("endTime")),
            end_only_when_finished=True,
            counts=Counts(
                pages=as_count(item.get("totalPageLoadCount")),
                records=as_count(item.get("totalDataCount")),
                errors=as_count(item.get("totalErrors")),
                requests=as_count(item.get("totalRequestCount")),
            ),
            message=message,
            url=self.run_url(agent.id, run_id, agent.name),
            extra=extra,
        )

    # ------------------------------------------------------------------ run details

    async def enrich(self, event: Event) -> Event:
        """A finished run whose listing entry said nothing: its message, error count and log
        path from the run's own record."""
        if (
            event.phase is not Phase.FINISHED
            or event.message
            or not event.agent_id
            or not event.run_id
            or event.run_id.startswith(JOB_PREFIX)
        ):
            return event
        details = await self._details_of(event.agent_id, event.run_id)
        if not details:
            return event
        counts = event.counts or Counts()
        errors, records = as_count(details.get("errors")), as_count(details.get("dataCount"))
        log_path = as_text(details.get("logPath"))
        return replace(
            with_data(event, log_path=log_path) if log_path else event,
            message=as_text(details.get("statusMessage")),
            counts=replace(
                counts,
                errors=counts.errors if errors is None else errors,
                records=counts.records if records is None else records,
            ),
        )

    async def _details_of(self, agent_id: str, run_id: str) -> dict[str, Any] | None:
        if not _GUID.fullmatch(run_id):  # it goes into the URL path: nothing else is sent
            self.warn_once(agent_id, "run id is not a GUID; no details asked", run_id=run_id)
            return None
        try:
            data = await self.get(f"/api/run/{run_id}", agent_id=agent_id)
        except SourceError as err:
            self.warn_once(agent_id, "run details unavailable", run_id=run_id, error=err.detail)
            return None
        if not isinstance(data, dict):
            self.warn_once(agent_id, "run details are not an object", run_id=run_id)
            return None
        keep = ("statusMessage", "errors", "dataCount", "logPath")
        return {k: data.get(k) for k in keep}

    # ----------------------------------------------------------- schedules, retries

    async def schedules(self, agent_ids: Sequence[str]) -> list[ScheduledStart] | None:
        """Each agent's enabled job schedules and their next run times (one request each)."""
        found = []
        for agent_id in agent_ids:
            guid, _ = await self._target(agent_id)
            path = f"/api/job/{guid}/schedules"
            for item in _listing(
                self.name, await self.get(path, agent_id=agent_id), path, agent_id
            ):
                if not isinstance(item, dict) or item.get("isEnabled") is False:
                    continue
                at = parse_iso(item.get("nextRunTime"))
                if at is not None:
                    name = as_text(item.get("cronDescription"), 200) or as_id(
                        item.get("scheduleId")
                    )
                    found.append(ScheduledStart(agent_id, at, name or "schedule"))
        return found

    async def retry(self, agent_id: str, run_id: str) -> str | None:
        """Run it again in place, continuing and retrying its errors (seed 004)."""
        if not _GUID.fullmatch(run_id):
            raise SourceProtocolError(self.name, "run id must be a GUID", agent_id=agent_id)
        await self.post(
            f"/api/run/{run_id}/retry",
            params={"RunMethod": "ContinueAndRetryErrors"},
            agent_id=agent_id,
        )
        return None

    # ---------------------------------------------------------------------- outputs

    async def outputs(self, agent_id: str, run_id: str) -> list[RunFile]:
        """The run's log and backup data (zip files). Nothing is listed, so this asks nothing;
        the run id goes into URL paths, so anything but a GUID is refused, never sent."""
        guid = run_id.removeprefix(JOB_PREFIX)
        if not _GUID.fullmatch(guid):
            raise SourceProtocolError(
                self.name, "run id must be a GUID (or job-<GUID>)", agent_id=agent_id
            )
        if run_id.startswith(JOB_PREFIX):
            base, log = f"/api/job/run/{guid}", "logs"
        else:
            base, log = f"/api/run/{guid}", "log"
        return [
            RunFile("log", "log.zip", f"{base}/{log}", kind="log", archive=True),
            RunFile(
                "backup", "backup.zip", f"{base}/backup", kind="data", archive=True, optional=True
            ),
        ]

    # ------------------------------------------------------------------------ check

    async def check(self) -> list[CheckResult]:
        """Every configured agent: its path resolved, its history (and job history) readable."""
        self.checked_agents = len(self.config.agents)
        lines = []
        for agent_id in self.config.agents:
            guid, name = await self._target(agent_id, fresh=True)
            label = f"{agent_id} → {guid}" if guid != agent_id else agent_id
            runs = await self._history(agent_id, guid)
            what = f"agent {label}" + (f" ({name})" if name else "")
            text = f"{what}: {len(runs)} recent run(s) readable"
            if self.config.watch_jobs:
                path = f"/api/job/{guid}/history"
                jobs = await self.get(path, params={"count": 1}, agent_id=agent_id)
                _listing(self.name, jobs, path, agent_id)
                text += "; job history readable"
            lines.append(CheckResult(True, text))
        return lines


def _listing(source: str, data: Any, path: str, agent_id: str) -> list[Any]:
    """A history answer as a list; tolerate an envelope, refuse anything else."""
    if isinstance(data, dict):
        data = next((data[k] for k in ("items", "runs", "data") if k in data), data)
    if not isinstance(data, list):
        raise SourceProtocolError(
            source, f"GET {path}: expected a list, got {type(data).__name__}", agent_id=agent_id
        )
    return data


def _is_path(agent_id: str) -> bool:
    return "/" in agent_id
