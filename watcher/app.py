"""The composition root: the only place that builds things.

`App` owns the lease on the state file, the state store, the HTTP session, the sources and their
pollers, the sinks and the dispatcher. Everything else receives what it needs as arguments, so
tests build an `App` with an injected clock against the simulator and drive it with `once()` —
the same code path as the `watcher once` command. `watcher.daemon.Daemon` runs an App on a
schedule. What is done with an open App, rather than to build it, lives beside it:
`watcher.upkeep` (settling deliveries, orphaned rows, housekeeping), `watcher.live`
(readiness), `watcher.metrics` (the gauges read at scrape time), `watcher.checks`
(`watcher check`).

Opening is all or nothing: the lease is taken and the state file checked before anything else
is built, and whatever was built is closed again when a later step fails, so a start that fails
says one line and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

import aiohttp
import structlog

from watcher import statefile
from watcher.config import Settings, SourceConfig
from watcher.cycle import PollReport
from watcher.dispatch import Dispatcher
from watcher.errors import ConfigError, WatcherError
from watcher.events import Event, EventType, source_event
from watcher.heartbeat import Heartbeat
from watcher.live import EventStream, ReadinessWatch
from watcher.lock import FileLease, Lease
from watcher.logs import log_event
from watcher.noise.gate import Gate
from watcher.poller import SourcePoller
from watcher.redact import redact
from watcher.rules import RuleBook
from watcher.sinks.base import Sink
from watcher.sinks.eventlog import EventLog
from watcher.sources.base import Source, source_class
from watcher.sources.http import HttpClient, make_session
from watcher.statefile import StateFileError
from watcher.store import Store
from watcher.upkeep import expire_orphans, settle

if TYPE_CHECKING:  # loaded only when configured: a `watcher once` imports what it uses
    from watcher.endpoint import Endpoint
    from watcher.sinks.alerting import AlertChannel
    from watcher.sinks.fetcher import Fetcher

log = structlog.get_logger("watcher")

Clock = Callable[[], datetime]

ONCE_PATIENCE = 10.0
"""Seconds `watcher once` waits at most for its request budget (a slot, a Retry-After)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Counting(Protocol):
    """What the App and the daemon tell the metrics (`watcher.metrics.Metrics`)."""

    def observe_poll(self, report: PollReport, seconds: float) -> None: ...

    def observe_events(self, events: list[Event]) -> None: ...

    def observe_reload(self, result: str) -> None: ...


class Uncounted:
    """The metrics of an App without an HTTP endpoint: nobody could read them."""

    def observe_poll(self, report: PollReport, seconds: float) -> None:
        pass

    def observe_events(self, events: list[Event]) -> None:
        pass

    def observe_reload(self, result: str) -> None:
        pass


def build_source(config: SourceConfig, http: HttpClient) -> Source:
    cls = source_class(config.kind)
    if cls is None:
        raise ConfigError([f"sources.{config.name}.kind: unsupported kind {config.kind!r}"])
    return cls(config, http)


def build_channels(settings: Settings, *, clock: Clock) -> list[AlertChannel]:
    """One alert channel per (subscription, URL) of `settings`."""
    if not settings.subscriptions:
        return []
    from watcher.messages import Display  # Jinja2, and apprise for its URLs: when used
    from watcher.sinks.alerting import Subscription, channel_class

    display = Display(ZoneInfo(settings.watcher.display_timezone), socket.gethostname())
    subscriptions = [Subscription(config, display) for config in settings.subscriptions]
    return [
        channel_class(url)(sub, url, clock=clock)
        for sub in subscriptions
        for url in sub.config.url_values()
    ]


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
        lease: Lease | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._own_session = session is None and http is None
        self._session = session
        self._http = http
        self._extra_sinks = extra_sinks or []
        self.lease: Lease = lease or FileLease(settings.watcher.state_path)
        self.store: Store | None = None
        self.dispatcher: Dispatcher | None = None
        self.pollers: list[SourcePoller] = []
        self.metrics: Counting = Uncounted()
        if settings.http.listen:  # counted only where they can be read (Prometheus: when used)
            from watcher.metrics import Metrics, held_alerts, outbox_state, source_states

            self.metrics = Metrics(
                sources=lambda: source_states(self.pollers),
                outbox=lambda: outbox_state(self.store, self.clock()),
                held=lambda: held_alerts(self.store),
            )
        self.stream = EventStream()
        self.readiness = ReadinessWatch(lambda: self.pollers, clock)
        self.endpoint: Endpoint | None = None
        self.heartbeat: Heartbeat | None = None
        self.failure: WatcherError | None = None
        """Set when the App cannot go on (the state file lost): the daemon stops, exit 1."""
        self.halted = asyncio.Event()
        self.abandoned = False
        """Set when a delivery was abandoned at a deadline (`upkeep.settle`): its send may still
        run in one of apprise's threads, which the process must not wait for (see `cli`)."""

    async def __aenter__(self) -> App:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        try:
            self._open()
        except BaseException:
            await self.close()
            raise

    def _open(self) -> None:
        cfg = self.settings
        path = cfg.watcher.state_path
        statefile.check_directory(path)
        self.lease.acquire()
        self.store = store = Store.open(path)
        if self._http is None:
            if self._session is None:
                self._session = make_session()
            self._http = HttpClient(self._session)
        if cfg.watcher.heartbeat_url is not None:
            fail = cfg.watcher.heartbeat_fail_url
            self.heartbeat = Heartbeat(
                cfg.watcher.heartbeat_url.get_secret_value(),
                fail.get_secret_value() if fail else None,
                session=self._http.session,
                clock=self.clock,
            )
        sinks: list[Sink] = []
        if cfg.watcher.events_path:
            sinks.append(EventLog(cfg.watcher.events_path))
        sinks.extend(self.channels())
        outputs = self.outputs_sink()
        if outputs is not None:
            sinks.append(outputs)
        sinks.extend(self._extra_sinks)
        self.dispatcher = Dispatcher(
            store, sinks, clock=self.clock, on_events=self._on_events, gate=Gate(store)
        )
        self.dispatcher.decide_held_again()  # the rules may have changed while it was down
        try:
            self.pollers = [
                self.poller(build_source(sc, self._http)) for sc in cfg.sources if sc.enabled
            ]
        except sqlite3.DatabaseError as err:  # a page the start-up check could not see
            raise statefile.damaged(path, err) from None

    def poller(self, source: Source) -> SourcePoller:
        """A poller for `source`; it loads the source's state from the store."""
        assert self.store is not None and self.dispatcher is not None
        return SourcePoller(
            source,
            self.store,
            clock=self.clock,
            route=self.dispatcher.route,
            on_events=self._on_events,
            rules=RuleBook(self.settings.rules),
            schedule_refresh=self.settings.watcher.schedule_refresh,
        )

    async def close(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.stop()
            self.endpoint = None
        if self.dispatcher is not None:
            await self.dispatcher.close()
            self.dispatcher = None
        if self.store is not None:
            for poller in self.pollers:
                try:
                    poller.save_marks()
                except (sqlite3.Error, OSError) as err:
                    log.warning("source marks not saved", source=poller.name, error=str(err))
            self.store.close()
            self.store = None
        self.lease.release()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def channels(self, settings: Settings | None = None) -> list[AlertChannel]:
        """One alert channel per (subscription, URL) of `settings` (default: the running ones)."""
        return build_channels(settings or self.settings, clock=self.clock)

    def outputs_sink(self) -> Sink | None:
        """What fetches the outputs of finished runs, as `[outputs]` asks (None: disabled)."""
        if not self.settings.outputs.enabled:
            return None
        from watcher.sinks.outputs import OutputsSink

        return OutputsSink(self.fetcher(), clock=self.clock)

    def fetcher(self, *, concurrency: int | None = None) -> Fetcher:
        """What fetches run outputs to disk: for the outputs sink and `watcher fetch`. An App
        built with an `http` serves this unopened too, which `watcher fetch` relies on: a manual
        download takes no lease and touches no state file."""
        from watcher.sinks.fetcher import Fetcher

        return Fetcher(
            self.settings.outputs, self.source, clock=self.clock, concurrency=concurrency
        )

    def source(self, name: str) -> Source | None:
        """The running source called `name`; one configured but disabled is built on demand
        (`watcher fetch` may fetch from it). None when there is no such source."""
        for poller in self.pollers:
            if poller.name == name:
                return poller.source
        config = next((sc for sc in self.settings.sources if sc.name == name), None)
        if config is None or self._http is None:
            return None
        return build_source(config, self._http)

    @property
    def http(self) -> HttpClient:
        assert self._http is not None, "the App is not open"
        return self._http

    def record(self, events: list[Event]) -> None:
        """Record events that arise outside a poll (state.restored) like any other event."""
        assert self.dispatcher is not None
        self.dispatcher.record(events)

    def _on_events(self, events: list[Event]) -> None:
        """Every freshly recorded event passes here once: log line, metrics, live stream."""
        for event in events:
            log_event(event)
        self.metrics.observe_events(events)
        self.stream.publish(events)
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def poll(self, poller: SourcePoller, force: bool = False) -> PollReport:
        """One poll, timed and counted (the daemon's job, and `once()`)."""
        if poller not in self.pollers:  # retired by a reload after this job was queued
            return PollReport(poller.name, skipped=True)
        if not self.watch_state():
            return PollReport(poller.name, skipped=True)
        started = time.perf_counter()
        report = await poller.poll(force=force)
        self.metrics.observe_poll(report, time.perf_counter() - started)
        self.readiness.check()
        if self.heartbeat is not None:
            if any(e.type == EventType.SOURCE_FAILED for e in report.events):
                await self.heartbeat.failing()
            elif report.ok and not any(p.health.failing for p in self.pollers):
                await self.heartbeat.healthy()
        return report

    # --- the state file ---------------------------------------------------------------------

    def watch_state(self) -> bool:
        """Is the state file still ours? If it was removed or replaced while open, write it
        back from the open database and say so (`state.restored`); if that is impossible, or
        another process now holds the lease, fail the App (the daemon exits 1). True while
        the App can go on."""
        if self.failure is not None or self.store is None:
            return self.failure is None
        path = self.settings.watcher.state_path
        try:
            if not self.lease.held():
                raise StateFileError(path, "another watcher took over the state file's lock")
            if not self.store.replaced():
                return True
            log.error("state file removed or replaced while running; writing it back",
                      path=str(path))  # fmt: skip
            aside = self.store.write_back(self.clock())
        except WatcherError as err:
            return self._fail(err)
        except (OSError, sqlite3.Error) as err:
            reason = redact(f"{type(err).__name__}: {err}")
            return self._fail(StateFileError(path, f"cannot be written back ({reason})"))
        now = self.clock()
        self.record(
            [
                source_event(
                    EventType.STATE_RESTORED,
                    source="watcher",
                    source_kind="watcher",
                    ts=now,
                    message=f"state file written back to {path}"
                    + (f"; the file found there was moved to {aside}" if aside else ""),
                    id_parts=(now.isoformat(),),
                    path=str(path),
                    moved_aside=str(aside) if aside else None,
                )
            ]
        )
        return True

    def _fail(self, err: WatcherError) -> bool:
        self.failure = err
        log.error("cannot go on", error=str(err))
        self.halted.set()
        return False

    # --- the HTTP endpoint -------------------------------------------------------------------

    async def serve_http(self) -> tuple[str, int] | None:
        """Start the `[http] listen` endpoint, if configured; return the address bound."""
        address = self.settings.http.address
        if address is None or self.endpoint is not None:
            return self.endpoint.address if self.endpoint else None
        from watcher.endpoint import Endpoint
        from watcher.metrics import Metrics
        from watcher.noise.api import SilenceApi
        from watcher.view import of_app

        assert isinstance(self.metrics, Metrics)
        silences = SilenceApi(
            lambda: self.store,
            token=self.settings.http.token,
            sources=lambda: [s.name for s in self.settings.sources],
            clock=self.clock,
        )
        endpoint = Endpoint(
            readiness=self.readiness.check,
            metrics=self.metrics,
            stream=self.stream,
            view=lambda: of_app(self),
            replay=lambda last, limit: self.store.events_after(last, limit) if self.store else None,
            silences=silences,
        )
        bound = await endpoint.start(*address)
        self.endpoint = endpoint
        return bound

    # --- one pass (`watcher once`, tests) ----------------------------------------------------

    async def once(self) -> list[PollReport]:
        """Poll every source once (all agents), give up the rows of channels removed from the
        config (as the daemon does at start), then deliver what that caused — and what the
        deliveries record in turn — within `shutdown_timeout`. A request budget that a run
        before spent is not waited out: what it cannot afford now waits for the next run."""
        for poller in self.pollers:
            poller.source.budget.patience = ONCE_PATIENCE
        reports = await asyncio.gather(*(self.poll(p, force=True) for p in self.pollers))
        for report in reports:
            if report.deferred.get("budget"):  # not a failure: cron's next `once` goes on
                log.info("request budget spent: the other agents wait for the next run",
                         source=report.source, agents=report.deferred["budget"],
                         next_slot_s=report.budget_wait)  # fmt: skip
        await expire_orphans(self)
        await settle(self)
        return list(reports)
