"""What every source is: a named connection to one platform that lists agents and their runs.

A source is the only code that knows its platform's API. It turns answers into `RunSnapshot`s
and failures into the typed errors of `watcher.errors`; the rest of watcher never sees JSON.
Records it cannot read are skipped with a warning (once per agent and problem), never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import string
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import structlog
from yarl import URL

from watcher import __version__, redact
from watcher.config.kinds import KindRules, register
from watcher.errors import SourceProtocolError
from watcher.events import Event
from watcher.runs import Agent, Hint, RunSnapshot
from watcher.sources.budget import AdaptiveLimit, Gate, RequestBudget
from watcher.sources.http import Downloaded, HttpClient, RetryPolicy, Unchanged

if TYPE_CHECKING:
    from watcher.config import SourceConfig

log = structlog.get_logger("watcher.source")

_purpose: ContextVar[str] = ContextVar("purpose", default="runs")


@contextlib.contextmanager
def purpose(name: str) -> Iterator[None]:
    """Count the requests made inside (and in tasks started inside) as `name` — `hints`,
    `runs`, `sweep`, `enrich`, … — in the metrics."""
    token = _purpose.set(name)
    try:
        yield
    finally:
        _purpose.reset(token)


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
class Hints:
    """A platform's agent listing: whole, or read as far as it changed."""

    agents: list[tuple[Agent, Hint]]
    complete: bool
    """The whole listing was read."""
    whole: bool = True
    """…and it had every agent the platform counted: only then is one missing from it gone.
    (A listing that changes while its pages are read can come short, as can a platform whose
    total overstates.)"""


@dataclass(frozen=True, slots=True)
class ScheduledStart:
    """A start a platform's own schedule announces."""

    agent_id: str
    at: datetime
    schedule: str
    """The schedule's name (or id), for the alert."""


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


_CLASSES: dict[str, type[Source]] = {}


def source_class(kind: str) -> type[Source] | None:
    """The source class of a kind (the config has checked that it exists)."""
    from watcher.config import kinds

    kinds()  # loads the built-in sources
    return _CLASSES.get(kind)


class Source(ABC):
    """A platform's API, as watcher speaks it. A subclass declares its `rules` (what its
    config may say); defining it registers the kind, so a new platform is one module."""

    kind: ClassVar[str]
    rules: ClassVar[KindRules]
    #: Whether the platform's change hints are usable, as `check` found (None: it gives none).
    hinted: bool | None = None
    #: How many agents `check` found to watch (each one listing, in the budget's arithmetic).
    checked_agents: int = 0
    #: Whether `outputs()` can list a run's files (the outputs sink fetches from no other).
    has_outputs: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "rules" in cls.__dict__:
            cls.kind = cls.rules.name
            _CLASSES[cls.kind] = cls
            register(cls.rules)

    def __init__(self, config: SourceConfig, http: HttpClient) -> None:
        self.config = config
        self.name = config.name
        self.http = http
        self.policy = RetryPolicy(retries=config.retries)
        self._base = config.base_url.rstrip("/")
        self.budget = RequestBudget(
            config.requests_per_minute, wall=http.wall, sleep=http.sleep, source=config.name
        )
        self.concurrency = AdaptiveLimit(config.max_concurrency)
        self.requests: Counter[str] = Counter()
        """Requests sent, by purpose (see `purpose`)."""
        self._warned: set[tuple[str, str]] = set()
        self.fingerprints = Fingerprints(
            f"{__version__}|{self.kind}|{self._base}|{config.dashboard_url or ''}"
        )
        redact.register(config.secret())

    @property
    def history_depth(self) -> int:
        """How many runs of one agent a listing can hold: runs deeper than this in the state
        can never reappear, so the poller may forget them."""
        return self.config.max_records

    @property
    def listing_cost(self) -> int:
        """Requests one agent's listing takes (what the planner budgets per agent)."""
        return 1

    def gate(self, purpose_name: str | None = None) -> Gate:
        """The way through this source's budget and concurrency for one request."""
        return Gate(self.budget, self.concurrency, self.requests, purpose_name or _purpose.get())

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """The headers that carry the credential, as the platform expects them."""

    @abstractmethod
    async def agents(self) -> list[Agent]:
        """The agents to watch now (resolving wildcards)."""

    async def hints(self, watermark: datetime | None, *, complete: bool) -> Hints | None:
        """The platform's change hints, most recently active agent first, read until the
        agents are older than `watermark` (or all of them with `complete`); None from a
        platform that gives no hints (then every agent is swept)."""
        return None

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
        workers = min(len(due), self.config.max_concurrency)
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

    async def enrich(self, event: Event) -> Event:
        """`event` (a new `run.finished`) with what the platform can add for the alert —
        diagnostics, failed steps, a run's message — at the cost of requests from the budget.
        Called once per finish, after the diff; a failure must leave the event as it was."""
        return event

    async def check(self) -> list[CheckResult]:
        """Connectivity and auth, for `watcher check`. Raises a SourceError on failure."""
        agents = await self.agents()
        self.checked_agents = len(agents)
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

        return await self.http.get_json(
            url,
            source=self.name,
            headers=self.auth_headers(),
            timeout=self.config.timeout,
            policy=self.policy,
            agent_id=agent_id,
            unchanged=unchanged,
            max_bytes=self.config.max_response_bytes,
            gate=self.gate(),
        )

    async def schedules(self, agent_ids: Sequence[str]) -> list[ScheduledStart] | None:
        """The starts the platform's own enabled schedules announce for these agents (their
        next run times); None from a platform without schedules."""
        return None

    async def retry(self, agent_id: str, run_id: str) -> str | None:
        """Ask the platform to run a failed run again. Returns the id of the new run where the
        platform starts one, None where it restarts the run in place. Raises a `SourceError`;
        a `SourceUnavailable` without an HTTP status (a timeout, a dropped connection) means
        the outcome is unknown — the request may have been done."""
        raise SourceProtocolError(self.name, f"a {self.kind} source cannot retry runs")

    async def post(
        self,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str | int] | None = None,
        agent_id: str | None = None,
    ) -> Any:
        """POST JSON once (never retried: see `HttpClient.post_json`), through the budget."""
        url = URL(self._base + path)
        if params:
            url = url.update_query(params)
        return await self.http.post_json(
            url,
            {} if body is None else body,
            source=self.name,
            headers=self.auth_headers(),
            timeout=self.config.timeout,
            agent_id=agent_id,
            gate=self.gate("retry"),
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
        source's credentials, timeout and retries. It draws from the source's request budget
        but takes none of its concurrency: a long download must not hold up polls (the
        outputs sink caps downloads)."""
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
            gate=_BudgetOnly(self.budget, self.requests),
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


class _BudgetOnly:
    """A download's gate: the budget, and a count, but no concurrency slot."""

    __slots__ = ("_budget", "_counts", "_sent_at")

    def __init__(self, budget: RequestBudget, counts: Counter[str]) -> None:
        self._budget = budget
        self._counts = counts
        self._sent_at: float | None = None

    async def enter(self) -> None:
        await self._budget.take()
        self._sent_at = self._budget.now()
        self._counts["download"] += 1

    def leave(self, latency: float | None, *, dropped: bool) -> None:
        pass

    def throttled(self, retry_after: float | None) -> None:
        self._budget.throttle(retry_after, sent_at=self._sent_at)
