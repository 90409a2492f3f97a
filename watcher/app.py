"""The composition root: the only place that builds things.

`App` owns the HTTP session, the state store, the sources and their pollers, the sinks and the
dispatcher. Everything else receives what it needs as arguments, so tests build an `App` with an
injected clock against the simulator and drive it with `once()` — the same code path as the
`watcher once` command — while `run()` adds the scheduler and signal handling of the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watcher.dispatch import Dispatcher
from watcher.errors import ConfigError, SourceError
from watcher.logs import log_event
from watcher.models import Event
from watcher.poller import PollReport, SourcePoller
from watcher.settings import Settings, SourceConfig
from watcher.sinks.base import Sink
from watcher.sinks.eventlog import EventLog
from watcher.sources.base import CheckResult, Source
from watcher.sources.http import HttpClient, make_session
from watcher.sources.sequentum_cloud import SequentumCloud
from watcher.store import Store

log = structlog.get_logger("watcher")

SOURCE_KINDS: dict[str, type[Source]] = {
    SequentumCloud.kind: SequentumCloud,
}

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class SourceCheck:
    name: str
    kind: str
    ok: bool
    lines: list[CheckResult] = field(default_factory=list)


def build_source(config: SourceConfig, http: HttpClient) -> Source:
    try:
        cls = SOURCE_KINDS[config.kind]
    except KeyError:
        raise ConfigError(
            [f"sources.{config.name}.kind: unsupported kind {config.kind!r}"]
        ) from None
    return cls(config, http)


class App:
    """watcher, assembled. Use as `async with App(settings) as app:`."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        session: aiohttp.ClientSession | None = None,
        http: HttpClient | None = None,
        extra_sinks: list[Sink] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._own_session = session is None and http is None
        self._session = session
        self._http = http
        self._extra_sinks = extra_sinks or []
        self.store: Store | None = None
        self.dispatcher: Dispatcher | None = None
        self.pollers: list[SourcePoller] = []
        self.scheduler: AsyncIOScheduler | None = None

    async def __aenter__(self) -> App:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def open(self) -> None:
        cfg = self.settings
        if self._http is None:
            if self._session is None:
                self._session = make_session()
            self._http = HttpClient(self._session)
        self.store = Store.open(cfg.watcher.state_path)
        sinks: list[Sink] = []
        if cfg.watcher.events_path:
            sinks.append(EventLog(cfg.watcher.events_path))
        sinks.extend(self._extra_sinks)
        self.dispatcher = Dispatcher(self.store, sinks, clock=self.clock)
        self.pollers = [
            SourcePoller(
                build_source(sc, self._http),
                self.store,
                clock=self.clock,
                route=self.dispatcher.route,
                on_events=self._on_events,
            )
            for sc in cfg.sources
            if sc.enabled
        ]

    async def close(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.close()
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._own_session and self._session is not None:
            await self._session.close()

    def _on_events(self, events: list[Event]) -> None:
        for event in events:
            log_event(event)
        if self.dispatcher is not None:
            self.dispatcher.wake()

    # --- one pass (`watcher once`, tests) ----------------------------------------------------

    async def once(self) -> list[PollReport]:
        """Poll every source once (all agents), then deliver what that caused."""
        reports = await asyncio.gather(*(p.poll(force=True) for p in self.pollers))
        assert self.dispatcher is not None
        await self.dispatcher.drain()
        return list(reports)

    async def check(self) -> list[SourceCheck]:
        """Connectivity and auth of every configured source."""
        results = []
        for poller in self.pollers:
            source = poller.source
            try:
                lines = await source.check()
                results.append(SourceCheck(source.name, source.kind, True, lines))
            except SourceError as err:
                results.append(
                    SourceCheck(source.name, source.kind, False, [CheckResult(False, err.detail)])
                )
        return results

    async def housekeeping(self) -> None:
        """Keep the state file small: forget delivered events older than
        `event_retention_days`, and runs that can no longer appear in any listing.
        (A coroutine so that APScheduler runs it on the loop, not in a thread.)"""
        assert self.store is not None
        days = self.settings.watcher.event_retention_days
        events = self.store.prune_events(self.clock() - timedelta(days=days))
        runs = 0
        for poller in self.pollers:
            async with poller.paused():
                runs += poller.prune()
        if events or runs:
            log.info("state pruned", events=events, runs=runs, older_than_days=days)

    # --- the daemon ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll on schedule and deliver until SIGTERM/SIGINT (or `stop`), then shut down cleanly."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        assert self.dispatcher is not None
        self.scheduler = scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        for poller in self.pollers:
            cfg = poller.source.config
            scheduler.add_job(
                poller.poll,
                "interval",
                seconds=cfg.poll_interval_active,
                jitter=cfg.jitter or None,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=int(cfg.poll_interval_active) or 1,
                next_run_time=datetime.now(UTC),
                id=f"poll:{poller.name}",
                name=f"poll {poller.name}",
            )
        scheduler.add_job(
            self.housekeeping,
            "interval",
            hours=1,
            next_run_time=datetime.now(UTC),
            id="housekeeping",
            max_instances=1,
            coalesce=True,
        )
        log.info(
            "watcher started",
            sources=[p.name for p in self.pollers],
            state_path=str(self.settings.watcher.state_path),
        )
        scheduler.start()
        delivering = asyncio.create_task(self.dispatcher.run(stop), name="dispatcher")
        try:
            await stop.wait()
        finally:
            log.info("watcher stopping")
            scheduler.shutdown(wait=False)
            await self._finish(delivering)
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            log.info("watcher stopped")

    async def _finish(self, delivering: asyncio.Task[None]) -> None:
        """Let a poll in flight finish, then flush deliveries, within `shutdown_timeout`.

        A poll cut short loses nothing: its commit is one synchronous transaction, so it either
        happened or the next start diffs the same listing again.
        """
        budget = self.settings.watcher.shutdown_timeout
        try:
            async with asyncio.timeout(budget / 2):
                for poller in self.pollers:
                    await poller.idle()
        except TimeoutError:
            log.warning("a poll still waiting on its platform was abandoned")
            for poller in self.pollers:
                poller.cancel()
        assert self.dispatcher is not None
        try:
            await asyncio.wait_for(self.dispatcher.drain(), timeout=budget / 3)
        except TimeoutError:
            log.warning("undelivered events stay in the outbox for the next start")
        delivering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivering
