"""The automation-runs API (seed 003).

- Auth: `X-API-Key: <api_key>` (the default, `auth = "x-api-key"`), or
  `Authorization: Bearer <api_key>` with `auth = "bearer"`.
- Runs: `GET /api/v1/automation-runs?limit=L&offset=O` answers `{items, total}`. One poll reads
  the listing page by page (L = `max_records`, at most 1000) until `total` is reached, at most
  `max_pages` pages; runs are grouped by `automationId`, which is the agent id. The API has no
  filter by automation (only `status`, `limit`, `offset`), so a configured list of automation
  ids is applied on our side. With `agents = ["*"]` the source watches the one wildcard unit
  `*` and answers for every automation the listing names.
- Statuses are strings, mapped case-insensitively by `watcher.status.automation_status`; an
  unknown one becomes phase `unknown` (one `run.unknown_status` event), never an error.
- A run whose finish as a failure is news gets its steps from `GET …/{id}/steps` after the diff
  (`enrich`): the failed ones, as `(key, name, error)`, go into the event's `failed_steps` and
  its message names them, so the alert says which step broke. A steps failure is logged once
  and never fails the poll.
- Following a run through the event stream (`GET …/{id}/events`) is not implemented: active
  runs are polled every `poll_interval_active`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from watcher.codec import parse_iso
from watcher.config.kinds import KindRules
from watcher.config.problems import WILDCARD
from watcher.errors import SourceError, SourceProtocolError
from watcher.events import Event, with_data
from watcher.redact import redact
from watcher.runs import Agent, Outcome, RunSnapshot, snapshot
from watcher.sources.base import Answer, CheckResult, Source
from watcher.sources.fields import as_id, as_number, as_text, error_text, is_path_segment
from watcher.status import automation_status

API = "/api/v1/automation-runs"
SHOWN_STEPS = 3
"""Failed steps named in a run's message (all of them are in `failed_steps`)."""

FailedStep = tuple[str, str | None, str | None]  # (key, name, error)

_EPOCH = datetime.min.replace(tzinfo=UTC)


def parse_automation_id(item: object) -> str | None:
    """An automation id: a non-empty string (or an int) of at most 128 characters, as text."""
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    if isinstance(item, str) and item.strip() and len(item.strip()) <= 128:
        return item.strip()
    return None


class AutomationRuns(Source):
    rules = KindRules(
        name="automation_runs",
        parse_agent=parse_automation_id,
        agent_complaint="must be an automation id",
        auth_schemes=("x-api-key", "bearer"),
        keys=("max_pages",),
    )

    def auth_headers(self) -> dict[str, str]:
        if self.config.auth == "bearer":
            return {"Authorization": f"Bearer {self.config.secret()}"}
        return {"X-API-Key": self.config.secret()}

    @property
    def history_depth(self) -> int:
        return self.config.max_records * self.config.max_pages

    @property
    def listing_cost(self) -> int:
        return self.config.max_pages

    async def agents(self) -> list[Agent]:
        """The configured automation ids, or the one wildcard unit `*`."""
        return [Agent(id=a) for a in self.config.agents]

    async def runs(self, agent: Agent) -> list[RunSnapshot]:
        """The runs of one automation (every run for `*`), from a full listing."""
        grouped = await self._grouped()
        if agent.id == WILDCARD:
            return [s for snaps in grouped.values() for s in snaps]
        return grouped.get(agent.id, [])

    async def fetch(self, due: Sequence[Agent]) -> AsyncIterator[Answer]:
        """One paged listing for every due automation; for `*`, every automation it names."""
        try:
            grouped = await self._grouped()
        except SourceError as err:
            for agent in due:
                yield agent, err
            return
        if any(a.id == WILDCARD for a in due):
            for automation, snaps in grouped.items():
                yield Agent(automation), snaps
        for agent in due:
            if agent.id != WILDCARD:
                yield agent, grouped.get(agent.id, [])

    # --------------------------------------------------------------------- listing

    async def _grouped(self) -> dict[str, list[RunSnapshot]]:
        """Every listed run of a watched automation, by automation id, oldest first."""
        items = await self.list_runs()
        wanted = None if self.config.watches_all else set(self.config.agents)
        raw: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            automation = as_id(item.get("automationId"))
            if automation is None:
                self.warn_once(WILDCARD, "run without a usable automationId")
                continue
            if wanted is None or automation in wanted:
                raw.setdefault(automation, []).append(item)
        grouped: dict[str, list[RunSnapshot]] = {}
        for automation, entries in raw.items():
            entries.sort(key=lambda e: (_created(e), as_id(e.get("id")) or ""))
            snaps = (self._snapshot(automation, e) for e in entries)
            grouped[automation] = [s for s in snaps if s is not None]
        return grouped

    async def list_runs(self) -> list[dict[str, Any]]:
        """The run listing, page by page (newest first), until `total` or `max_pages`."""
        limit = self.config.max_records
        found: dict[str, dict[str, Any]] = {}
        offset, total = 0, 0
        for _ in range(self.config.max_pages):
            items, total = await self._page(limit, offset)
            for item in items:
                if not isinstance(item, dict):
                    self.warn_once(WILDCARD, "run entry is not an object")
                    continue
                run_id = as_id(item.get("id"))
                if run_id is None:
                    self.warn_once(WILDCARD, "run without a usable id")
                    continue
                found.setdefault(run_id, item)  # a run that moved to the next page: once
            offset += len(items)
            if not items or offset >= total:
                break
        else:
            if offset < total:
                self.warn_once(
                    WILDCARD,
                    "listing longer than max_pages; older runs are not watched",
                    read=offset,
                    total=total,
                )
        return list(found.values())

    async def _page(self, limit: int, offset: int) -> tuple[list[Any], int]:
        data = await self.get(API, params={"limit": limit, "offset": offset})
        items = data.get("items") if isinstance(data, dict) else None
        total = data.get("total") if isinstance(data, dict) else None
        if not isinstance(items, list) or isinstance(total, bool) or not isinstance(total, int):
            raise SourceProtocolError(
                self.name,
                f"GET {API}: expected {{items, total}}, got {type(data).__name__}"
                + (f" with keys {_keys(data)}" if isinstance(data, dict) else ""),
            )
        return items, total

    def _snapshot(self, automation: str, item: dict[str, Any]) -> RunSnapshot | None:
        run_id = as_id(item.get("id"))
        if run_id is None:
            return None
        return snapshot(
            source=self.name,
            agent_id=automation,
            run_id=run_id,
            info=automation_status(item.get("status")),
            started=parse_iso(item.get("startedAt")),
            ended=parse_iso(item.get("completedAt")),
            duration=as_number(item.get("durationSeconds")),
            message=error_text(item.get("error")),
            url=self.run_url(automation, run_id, None),
        )

    # ---------------------------------------------------------------- failed steps

    async def enrich(self, event: Event) -> Event:
        """A failed run: which of its steps failed, and why (the message names them)."""
        if event.outcome is not Outcome.FAILURE or not event.agent_id or not event.run_id:
            return event
        steps = await self.failed_steps(event.agent_id, event.run_id)
        if not steps:
            return event
        return replace(
            with_data(event, failed_steps=steps), message=_steps_message(steps, event.message)
        )

    async def failed_steps(self, automation: str, run_id: str) -> tuple[FailedStep, ...] | None:
        """The failed steps of a run as (key, name, error); None when they cannot be read."""
        if not is_path_segment(run_id):  # it goes into the URL path: nothing else is sent
            self.warn_once(automation, "run id unfit for a URL; no steps asked", run_id=run_id)
            return None
        path = f"{API}/{run_id}/steps"
        try:
            data = await self.get(path, agent_id=automation)
        except SourceError as err:
            self.warn_once(automation, "run steps unavailable", run_id=run_id, error=err.detail)
            return None
        steps = data.get("steps") if isinstance(data, dict) else None
        if not isinstance(steps, list):
            self.warn_once(automation, "run steps are not {steps: [...]}", run_id=run_id)
            return None
        failed: list[FailedStep] = []
        for step in steps:
            if not isinstance(step, dict):
                continue
            outcome = automation_status(step.get("status")).outcome
            error = error_text(step.get("error"))
            if outcome is Outcome.FAILURE or (error and outcome is None):
                key = as_id(step.get("key")) or "?"
                failed.append((key, as_text(step.get("name"), 200), error))
        return tuple(failed)

    async def retry(self, agent_id: str, run_id: str) -> str | None:
        """Retry from the failed step (the API's default); it starts a new run: its id."""
        if not is_path_segment(run_id):
            raise SourceProtocolError(self.name, "run id unfit for a URL", agent_id=agent_id)
        data = await self.post(f"{API}/{run_id}/retry", {}, agent_id=agent_id)
        return as_id(data.get("id")) if isinstance(data, dict) else None

    # ------------------------------------------------------------------------ check

    async def check(self) -> list[CheckResult]:
        """Auth and the listing: one page of one run."""
        self.checked_agents = len(self.config.agents)
        _, total = await self._page(1, 0)
        lines = [CheckResult(True, f"authenticated; {total} run(s) in the listing")]
        if not self.config.watches_all:
            watched = ", ".join(self.config.agents)
            lines.append(CheckResult(True, f"watching automation(s) {watched}"))
        return lines


def _keys(data: dict[str, Any]) -> str:
    """The first keys of an object, for an error line: the platform chose them, so they are
    masked (one may echo our key) and cut short; their repr keeps the line one line."""
    text = redact(repr(sorted(data)[:5]))
    return text if len(text) <= 200 else text[:199] + "…"


def _created(item: dict[str, Any]) -> datetime:
    return parse_iso(item.get("createdAt")) or parse_iso(item.get("startedAt")) or _EPOCH


def _steps_message(steps: tuple[FailedStep, ...], run_error: str | None) -> str:
    """ "failed step fetch (Fetch page): HTTP 500", with the run's own error in front."""
    parts = []
    for key, name, error in steps[:SHOWN_STEPS]:
        text = f"failed step {key}" + (f" ({name})" if name and name != key else "")
        parts.append(text + (f": {error}" if error else ""))
    if len(steps) > SHOWN_STEPS:
        parts.append(f"and {len(steps) - SHOWN_STEPS} more")
    text = "; ".join(parts)
    if run_error and run_error not in text:
        text = f"{run_error} — {text}"
    return text
