"""What every source is: a named connection to one platform that lists agents and their runs.

A source is the only code that knows its platform's API. It turns answers into `RunSnapshot`s
and failures into the typed errors of `watcher.errors`; the rest of watcher never sees JSON.
Records it cannot read are skipped with a warning (once per agent and problem), never fatal.
"""

from __future__ import annotations

import asyncio
import hashlib
import string
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import structlog
from yarl import URL

from watcher import __version__, redact
from watcher.errors import SourceProtocolError
from watcher.models import Agent, Event, Outcome, Phase, RunSnapshot, RunState
from watcher.sources.http import Downloaded, HttpClient, RetryPolicy, Unchanged

if TYPE_CHECKING:
    from watcher.settings import SourceConfig

log = structlog.get_logger("watcher.source")

Memory = Callable[[], Mapping[str, Mapping[str, RunState]]]
"""What the poller remembers of a source's runs: agent id → run id → state."""


class Fingerprints:
    """The body of each agent's last *committed* listing, as a hash, to skip identical ones.

    A body is only a candidate until the poller confirms that what it meant was committed:
    were the commit to fail, the next identical body is parsed and diffed again. Confirmed
    hashes are kept in the state file with the runs they produced, so a restart recognises
    them too. The hash is keyed with what else shapes a snapshot (watcher's version, the
    source's kind and dashboard link): a body read differently now is never taken as known.
    """

    def __init__(self, context: str = "") -> None:
        self._key = hashlib.blake2b(context.encode(), digest_size=32).digest()
        self._confirmed: dict[str, bytes] = {}
        self._pending: dict[str, bytes] = {}

    def unchanged(self, key: str, body: bytes) -> bool:
        digest = hashlib.blake2b(body, digest_size=16, key=self._key).digest()
        if self._confirmed.get(key) == digest:
            return True
        self._pending[key] = digest
        return False

    def restore(self, confirmed: Mapping[str, bytes]) -> None:
        """Take the hashes the state file holds as confirmed (at start)."""
        self._confirmed.update(confirmed)

    def pending(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The candidates among `keys`, to be stored with the commit that confirms them."""
        return {key: self._pending[key] for key in keys if key in self._pending}

    def confirm(self, keys: Iterable[str]) -> None:
        for key in keys:
            digest = self._pending.pop(key, None)
            if digest is not None:
                self._confirmed[key] = digest


Answer = tuple[Agent, list[RunSnapshot] | Unchanged | Exception]
"""One agent's answer to a poll: its runs, UNCHANGED (an identical listing), or an error."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of `watcher check`: what was tried and whether it worked."""

    ok: bool
    text: str


@dataclass(frozen=True, slots=True)
class RunFile:
    """One file a finished run produced, as `Source.outputs` lists it for the outputs sink."""

    file_id: str
    """The platform's id of the file (Cloud: its file id; ACC: "log" or "backup")."""
    name: str
    """The name the platform gives it. Untrusted: the outputs sink makes a safe name of it."""
    path: str
    """The API path (under the source's base URL) that downloads it."""
    size: int | None = None
    """The size the listing announces, when it does."""
    kind: str = "data"
    """"data", "log" or "other": what `type:` patterns in the outputs config select."""
    file_type: int | None = None
    """The platform's numeric file type, when it has one (`type:N` patterns)."""
    archive: bool = False
    """A zip file that `extract = true` unpacks."""
    optional: bool = False
    """A 404 means the run has no such file (ACC backup data when backups are off)."""


class Source(ABC):
    kind: ClassVar[str]
    #: Whether `outputs()` can list a run's files (the outputs sink fetches from no other).
    has_outputs: ClassVar[bool] = False

    def __init__(self, config: SourceConfig, http: HttpClient) -> None:
        self.config = config
        self.name = config.name
        self.http = http
        self.policy = RetryPolicy(retries=config.retries)
        self._base = config.base_url.rstrip("/")
        self._limit = asyncio.Semaphore(config.concurrency)
        self._warned: set[tuple[str, str]] = set()
        self.fingerprints = Fingerprints(
            f"{__version__}|{self.kind}|{self._base}|{config.dashboard_url or ''}"
        )
        self._memory: Memory | None = None
        redact.register(config.secret())

    def attach_memory(self, memory: Memory) -> None:
        """Let the source read what its poller remembers (read-only), so that it spends extra
        requests (run details, failed steps) only on runs whose finish is news."""
        self._memory = memory

    @property
    def history_depth(self) -> int:
        """How many runs of one agent a listing can hold: runs deeper than this in the state
        can never reappear, so the poller may forget them."""
        return self.config.max_records

    def is_news(self, agent_id: str, run_id: str, outcome: Outcome | None) -> bool:
        """Will this run, seen finished with `outcome`, be reported as finishing now?

        Mirrors the diff: nothing is news while the source is first baselined; an agent the
        poller has not seen is news only when it was discovered by a wildcard (configured
        agents are baselined quietly); a known run is news unless it is remembered finished
        with the same outcome. Without a poller (e.g. `watcher check`) nothing is news.
        """
        memory = self._memory() if self._memory is not None else None
        if not memory:
            return False
        runs = memory.get(agent_id)
        if runs is None:
            return self.config.agents == ["*"]
        state = runs.get(run_id)
        return state is None or state.phase is not Phase.FINISHED or state.outcome != outcome

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """The headers that carry the credential, as the platform expects them."""

    @abstractmethod
    async def agents(self) -> list[Agent]:
        """The agents to watch now (resolving wildcards)."""

    @abstractmethod
    async def runs(self, agent: Agent) -> list[RunSnapshot]:
        """The agent's recent runs, oldest first."""

    async def fetch(self, due: Sequence[Agent]) -> AsyncIterator[Answer]:
        """Each due agent's runs (or the exception that kept them from being read), yielded as
        they arrive, so the poller can diff and drop one listing before the next is in.

        The default asks `listing()` per agent, concurrently (bounded by `concurrency`). A platform
        that lists all runs at once overrides this: it may answer for agents it was not asked
        about (new ones it discovered), and `due` may hold the wildcard agent `*`.
        """
        # A few workers, not a task per agent: with thousands of agents, the tasks (and the
        # listings their results would hold) would otherwise all be alive at once. The bounded
        # queue is the backpressure: a fast platform cannot run ahead of the diff.
        workers = min(len(due), 2 * self.config.concurrency)
        answers: asyncio.Queue[Answer] = asyncio.Queue(maxsize=workers)
        todo = iter(due)

        async def work() -> None:
            for agent in todo:
                await answers.put(await self._fetch_one(agent))

        tasks = [asyncio.ensure_future(work()) for _ in range(workers)]
        try:
            for _ in due:
                yield await answers.get()
        finally:
            for task in tasks:  # the poll was cancelled: abandon the requests still waiting
                task.cancel()

    async def listing(self, agent: Agent) -> list[RunSnapshot] | Unchanged:
        """What a poll asks for: the agent's runs, or UNCHANGED when the platform answered
        byte for byte what the last committed listing said (see `Fingerprints`). A source
        that cannot tell answers its runs."""
        return await self.runs(agent)

    async def _fetch_one(self, agent: Agent) -> Answer:
        try:
            return agent, await self.listing(agent)
        except Exception as err:  # typed or not, the poller turns it into one agent's error
            return agent, err

    async def describe(self, event: Event) -> dict[str, Any] | None:
        """Fields to add to a `run.finished` event for alerts (e.g. `diagnostics`,
        `failed_steps`), or None. Called once per finish; failures must not fail the poll."""
        return None

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
        fingerprint: str | None = None,
    ) -> Any:
        """GET JSON. With `fingerprint` (a key, usually the agent id), a body identical to the
        last committed one under that key returns `UNCHANGED` without being parsed."""
        url = URL(self._base + path)
        if params:
            url = url.update_query(params)
        unchanged = None
        if fingerprint is not None:
            key = fingerprint

            def unchanged(body: bytes) -> bool:
                return self.fingerprints.unchanged(key, body)

        async with self._limit:
            return await self.http.get_json(
                url,
                source=self.name,
                headers=self.auth_headers(),
                timeout=self.config.timeout,
                policy=self.policy,
                agent_id=agent_id,
                unchanged=unchanged,
                max_bytes=self.config.max_response_bytes,
            )

    async def outputs(self, agent_id: str, run_id: str) -> list[RunFile]:
        """The files run `run_id` of agent `agent_id` produced, for the outputs sink and
        `watcher fetch`. Only sources with `has_outputs` implement it."""
        raise SourceProtocolError(self.name, f"a {self.kind} source offers no run outputs")

    async def download(
        self,
        item: RunFile,
        dest: BinaryIO,
        *,
        agent_id: str | None = None,
        max_bytes: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Downloaded:
        """Stream `item` into the open file `dest` (see `HttpClient.download`), with this
        source's credentials, timeout and retries. It takes none of the source's `concurrency`
        slots: a long download must not hold up polls (the outputs sink caps downloads)."""
        return await self.http.download(
            URL(self._base + item.path),
            dest,
            source=self.name,
            headers=self.auth_headers(),
            timeout=self.config.timeout,
            policy=self.policy,
            agent_id=agent_id,
            max_bytes=max_bytes,
            progress=progress,
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
