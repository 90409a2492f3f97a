"""What every source is: a named connection to one platform that lists agents and their runs.

A source is the only code that knows its platform's API. It turns answers into `RunSnapshot`s
and failures into the typed errors of `watcher.errors`; the rest of watcher never sees JSON.
Records it cannot read are skipped with a warning (once per agent and problem), never fatal.
"""

from __future__ import annotations

import asyncio
import string
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import structlog
from yarl import URL

from watcher import redact
from watcher.models import Agent, RunSnapshot
from watcher.sources.http import HttpClient, RetryPolicy

if TYPE_CHECKING:
    from watcher.settings import SourceConfig

log = structlog.get_logger("watcher.source")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of `watcher check`: what was tried and whether it worked."""

    ok: bool
    text: str


class Source(ABC):
    kind: ClassVar[str]

    def __init__(self, config: SourceConfig, http: HttpClient) -> None:
        self.config = config
        self.name = config.name
        self.http = http
        self.policy = RetryPolicy(retries=config.retries)
        self._base = config.base_url.rstrip("/")
        self._limit = asyncio.Semaphore(config.concurrency)
        self._warned: set[tuple[str, str]] = set()
        redact.register(config.secret())

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """The headers that carry the credential, as the platform expects them."""

    @abstractmethod
    async def agents(self) -> list[Agent]:
        """The agents to watch now (resolving wildcards)."""

    @abstractmethod
    async def runs(self, agent: Agent) -> list[RunSnapshot]:
        """The agent's recent runs, oldest first."""

    async def fetch(
        self, due: Sequence[Agent]
    ) -> list[tuple[Agent, list[RunSnapshot] | Exception]]:
        """The runs of each due agent, or the exception that kept them from being read.

        The default asks `runs()` per agent, concurrently (bounded by `concurrency`). A platform
        that lists all runs at once overrides this: it may answer for agents it was not asked
        about (new ones it discovered), and `due` may hold the wildcard agent `*`.
        """
        return list(await asyncio.gather(*(self._fetch_one(a) for a in due)))

    async def _fetch_one(self, agent: Agent) -> tuple[Agent, list[RunSnapshot] | Exception]:
        try:
            return agent, await self.runs(agent)
        except Exception as err:  # typed or not, the poller turns it into one agent's error
            return agent, err

    async def check(self) -> list[CheckResult]:
        """Connectivity and auth, for `watcher check`. Raises a SourceError on failure."""
        agents = await self.agents()
        lines = [CheckResult(True, f"authenticated; {len(agents)} agent(s) to watch")]
        if agents:
            runs = await self.runs(agents[0])
            label = agents[0].name or agents[0].id
            lines.append(CheckResult(True, f"agent {label}: {len(runs)} recent run(s) readable"))
        return lines

    async def get(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        agent_id: str | None = None,
    ) -> Any:
        url = URL(self._base + path)
        if params:
            url = url.update_query(params)
        async with self._limit:
            return await self.http.get_json(
                url,
                source=self.name,
                headers=self.auth_headers(),
                timeout=self.config.timeout,
                policy=self.policy,
                agent_id=agent_id,
            )

    def run_url(self, agent_id: str, run_id: str, agent_name: str | None) -> str | None:
        """The link to a run, from the source's `dashboard_url` template."""
        template = self.config.dashboard_url
        if not template:
            return None
        fields = {"agent_id": agent_id, "run_id": run_id, "agent_name": agent_name or ""}
        fields["source"] = self.name
        return string.Formatter().vformat(template, (), fields)

    def warn_once(self, agent_id: str, problem: str, **details: Any) -> None:
        """Log a skipped record once per agent and kind of problem, not once per poll."""
        if (agent_id, problem) in self._warned:
            return
        self._warned.add((agent_id, problem))
        log.warning(
            "record skipped", source=self.name, agent_id=agent_id, problem=problem, **details
        )
