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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import structlog
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watcher import logs
from watcher.dispatch import Dispatcher
from watcher.endpoint import Endpoint, EventStream, Readiness, assess
from watcher.errors import ConfigError, SourceError
from watcher.logs import log_event
from watcher.metrics import Metrics, OutboxState, source_states
from watcher.models import Event
from watcher.poller import PollReport, SourcePoller
from watcher.redact import redact
from watcher.reload import ReloadPlan, plan_reload
from watcher.sdnotify import Notifier
from watcher.settings import Settings, SourceConfig, load_settings
from watcher.sinks.base import Sink
from watcher.sinks.eventlog import EventLog
from watcher.sinks.fetcher import Fetcher
from watcher.sinks.notify import Channel, Subscription
from watcher.sinks.outputs import OutputsSink
from watcher.sources.automation_runs import AutomationRuns
from watcher.sources.base import CheckResult, Source
from watcher.sources.http import HttpClient, make_session
from watcher.sources.sequentum_acc import SequentumAcc
from watcher.sources.sequentum_cloud import SequentumCloud
from watcher.store import Store

log = structlog.get_logger("watcher")

SOURCE_KINDS: dict[str, type[Source]] = {
    SequentumCloud.kind: SequentumCloud,
    SequentumAcc.kind: SequentumAcc,
    AutomationRuns.kind: AutomationRuns,
}

Clock = Callable[[], datetime]
Loader = Callable[[Path], Settings]
"""Reads the config file again on SIGHUP; raises `ConfigError` (the CLI adds its overrides)."""


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
        loader: Loader = load_settings,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._own_session = session is None and http is None
        self._session = session
        self._http = http
        self._extra_sinks = extra_sinks or []
        self._loader = loader
        self.store: Store | None = None
        self.dispatcher: Dispatcher | None = None
        self.pollers: list[SourcePoller] = []
        self.scheduler: AsyncIOScheduler | None = None
        self.notifier = notifier or Notifier()
        self.metrics = Metrics(sources=lambda: source_states(self.pollers), outbox=self._outbox)
        self.stream = EventStream()
        self.endpoint: Endpoint | None = None
        self._ready = False  # readiness last seen, to log its changes once
        self._reloading: asyncio.Task[bool] | None = None
        self._reload_again = False
        self._delivering: asyncio.Task[None] | None = None
        self._retiring: set[SourcePoller] = set()  # pollers a reload is letting finish

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
        sinks.extend(self.channels())
        if cfg.outputs.enabled:
            sinks.append(OutputsSink(self.fetcher(), record=self.record, clock=self.clock))
        sinks.extend(self._extra_sinks)
        self.dispatcher = Dispatcher(self.store, sinks, clock=self.clock)
        self.pollers = [
            self._poller(build_source(sc, self._http)) for sc in cfg.sources if sc.enabled
        ]

    def _poller(self, source: Source) -> SourcePoller:
        """A poller for `source`; it loads the source's state from the store."""
        assert self.store is not None and self.dispatcher is not None
        return SourcePoller(
            source,
            self.store,
            clock=self.clock,
            route=self.dispatcher.route,
            on_events=self._on_events,
        )

    async def close(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.stop()
            self.endpoint = None
        if self.dispatcher is not None:
            await self.dispatcher.close()
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._own_session and self._session is not None:
            await self._session.close()

    def channels(self, settings: Settings | None = None) -> list[Channel]:
        """One alert channel per (subscription, URL) of `settings` (default: the running ones)."""
        return [
            Channel(Subscription(sub), url, record=self.record, clock=self.clock)
            for sub in (settings or self.settings).subscriptions
            for url in sub.url_values()
        ]

    def fetcher(self, *, concurrency: int | None = None) -> Fetcher:
        """What fetches run outputs to disk: for the outputs sink and `watcher fetch`."""
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

    def record(self, events: list[Event]) -> None:
        """Record events that sinks produce (notification.sent, …) like any other event."""
        assert self.store is not None and self.dispatcher is not None
        now = self.clock()
        fresh = self.store.commit(
            events=events, route=self.dispatcher.route, now=now, now_ts=now.timestamp()
        )
        self._on_events(fresh)

    def _on_events(self, events: list[Event]) -> None:
        """Every freshly recorded event passes here once: log line, metrics, live stream."""
        for event in events:
            log_event(event)
        self.metrics.observe_events(events)
        self.stream.publish(events)
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def _poll(self, poller: SourcePoller, force: bool = False) -> PollReport:
        """One poll, timed and counted (the scheduler's job, and `once()`)."""
        if poller not in self.pollers:  # retired by a reload after this job was queued
            return PollReport(poller.name, skipped=True)
        started = time.perf_counter()
        report = await poller.poll(force=force)
        self.metrics.observe_poll(report, time.perf_counter() - started)
        self.readiness()
        return report

    # --- health ----------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        """Is every source fresh (see `endpoint.assess`)? A change is logged once."""
        state = assess(self.pollers, self.clock())
        if state.ready != self._ready:
            self._ready = state.ready
            if state.ready:
                log.info("ready: every source polled successfully within 3 intervals")
            else:
                log.warning("not ready: stale sources", stale=[s["source"] for s in state.stale])
        return state

    def _outbox(self) -> OutboxState | None:
        """The outbox gauges at scrape time; None once the state file is closed."""
        if self.store is None:
            return None
        oldest = self.store.oldest_pending()
        age = max(0.0, self.clock().timestamp() - oldest) if oldest is not None else None
        return OutboxState(self.store.outbox_depth(), age)

    async def serve_http(self) -> tuple[str, int] | None:
        """Start the `[http] listen` endpoint, if configured; return the address bound."""
        address = self.settings.http.address
        if address is None or self.endpoint is not None:
            return self.endpoint.address if self.endpoint else None
        endpoint = Endpoint(readiness=self.readiness, metrics=self.metrics, stream=self.stream)
        bound = await endpoint.start(*address)
        self.endpoint = endpoint
        return bound

    # --- one pass (`watcher once`, tests) ----------------------------------------------------

    async def once(self) -> list[PollReport]:
        """Poll every source once (all agents), then deliver what that caused."""
        reports = await asyncio.gather(*(self._poll(p, force=True) for p in self.pollers))
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
        """Poll on schedule and deliver until SIGTERM/SIGINT (or `stop`), then shut down cleanly.

        SIGHUP reloads the config file (`request_reload`). Under systemd (`$NOTIFY_SOCKET`) the
        daemon says READY=1 once the store is open, the endpoint listens and the scheduler
        runs; a scheduler job on the event loop sends WATCHDOG=1, so a hung loop stops the
        pings and gets restarted; STOPPING=1 opens the shutdown.
        """
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        assert self.dispatcher is not None
        http = await self.serve_http()
        handlers = {signal.SIGTERM: stop.set, signal.SIGINT: stop.set}
        handlers[signal.SIGHUP] = self.request_reload
        for sig, handler in handlers.items():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, handler)
        self.scheduler = scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        for poller in self.pollers:
            self._schedule(poller)
        scheduler.add_job(
            self.housekeeping,
            "interval",
            hours=1,
            next_run_time=datetime.now(UTC),
            id="housekeeping",
            max_instances=1,
            coalesce=True,
        )
        ping = self.notifier.watchdog_interval
        if ping is not None:
            scheduler.add_job(
                self._watchdog,
                "interval",
                seconds=ping,
                id="watchdog",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(ping)),
            )
        log.info(
            "watcher started",
            sources=[p.name for p in self.pollers],
            state_path=str(self.settings.watcher.state_path),
            http=f"{http[0]}:{http[1]}" if http else None,
        )
        scheduler.start()
        self._delivering = delivering = asyncio.create_task(
            self.dispatcher.run(stop), name="dispatcher"
        )
        self.notifier.ready(f"watching {len(self.pollers)} source(s)")
        try:
            await stop.wait()
        finally:
            log.info("watcher stopping")
            self.notifier.stopping()
            scheduler.shutdown(wait=False)
            await self._cancel_reload()
            await self._finish(delivering)
            if self.endpoint is not None:
                await self.endpoint.stop()
                self.endpoint = None
            for sig in handlers:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            log.info("watcher stopped")

    def _schedule(self, poller: SourcePoller) -> None:
        """The poll job of `poller`: every `poll_interval_active`, the first one now."""
        if self.scheduler is None:
            return
        cfg = poller.source.config
        self.scheduler.add_job(
            self._poll,
            "interval",
            args=[poller],
            seconds=cfg.poll_interval_active,
            jitter=cfg.jitter or None,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(cfg.poll_interval_active) or 1,
            next_run_time=datetime.now(UTC),
            id=f"poll:{poller.name}",
            name=f"poll {poller.name}",
            replace_existing=True,
        )

    def _unschedule(self, name: str) -> None:
        if self.scheduler is not None:
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(f"poll:{name}")

    async def _watchdog(self) -> None:
        """WATCHDOG=1, from a scheduler job on the event loop. Withheld when the dispatcher task
        has died, so that systemd restarts a daemon that would no longer deliver."""
        if self._delivering is not None and self._delivering.done():
            log.error("the dispatcher stopped; withholding the watchdog ping")
            return
        self.notifier.watchdog()

    # --- reload (SIGHUP) ----------------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: reload in a task. A SIGHUP that arrives during a reload queues one more."""
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True
            return
        self._reloading = asyncio.get_running_loop().create_task(
            self._reload_queued(), name="reload"
        )

    async def _reload_queued(self) -> bool:
        applied = await self.reload()
        while self._reload_again:
            self._reload_again = False
            applied = await self.reload()
        return applied

    async def _cancel_reload(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            self._reloading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloading

    async def reload(self, path: Path | None = None) -> bool:
        """Read the config file (`path`, else the one started from) again and apply it.

        Sources and subscriptions added, removed or changed take effect; run state and
        undelivered events are kept (a removed channel's rows wait in the outbox). An invalid
        file is rejected with one error line per problem, and the running config stays.
        Returns whether the new config was applied.
        """
        path = path or self.settings.config_path
        if path is None:
            log.error("config reload impossible: watcher was not started from a config file")
            return False
        self.notifier.reloading()
        try:
            return await self._reload(path)
        except Exception as err:  # a bug must not take the daemon down with it
            log.error("config reload failed", config=str(path), exc_info=err)
            self.metrics.reloads.labels("rejected").inc()
            return False
        finally:
            self.notifier.ready()

    async def _reload(self, path: Path) -> bool:
        assert self.dispatcher is not None and self._http is not None
        try:
            loaded = self._loader(path)
            plan = plan_reload(self.settings, loaded)
            # Build what is new before touching what runs, so a failure changes nothing.
            sources = [build_source(sc, self._http) for sc in [*plan.added, *plan.changed]]
            channels = self.channels(plan.settings)
        except (ConfigError, ValueError) as err:
            problems = err.problems if isinstance(err, ConfigError) else [redact(str(err))]
            for problem in problems:
                log.error("config reload rejected", config=str(path), problem=problem)
            self.metrics.reloads.labels("rejected").inc()
            return False
        await self._apply(plan, sources, channels)
        self.metrics.reloads.labels("applied").inc()
        changes = plan.summary()
        log.info("config reloaded", config=str(path), changed=bool(changes), **changes)
        if plan.needs_restart:
            log.warning("config change takes effect at the next start", keys=plan.needs_restart)
        return True

    async def _apply(
        self, plan: ReloadPlan, sources: list[Source], channels: list[Channel]
    ) -> None:
        """Swap pollers, scheduler jobs and alert channels to match `plan`."""
        assert self.dispatcher is not None
        old = {p.name: p for p in self.pollers}
        leaving = [old[name] for name in [*plan.removed, *(s.name for s in plan.changed)]]
        # Out of the list first: a poll job that starts from now on sees it retired.
        self.pollers = [p for p in self.pollers if p not in leaving]
        for poller in leaving:
            self._unschedule(poller.name)
        self._retiring.update(leaving)  # a shutdown meanwhile waits for them too
        for poller in leaving:
            await poller.idle()  # a poll in flight commits; its successor loads that state
        self._retiring.difference_update(leaving)
        fresh = {source.name: source for source in sources}
        pollers: list[SourcePoller] = []
        for sc in plan.settings.sources:
            if sc.name in fresh:
                poller = self._poller(fresh[sc.name])
                if sc.name in old:  # a restarted source stays as fresh as it was
                    poller.last_success = old[sc.name].last_success
                self._schedule(poller)
                pollers.append(poller)
            elif sc.enabled and sc.name in old:
                pollers.append(old[sc.name])
        self.pollers = pollers

        running = {n: s for n, s in self.dispatcher.sinks.items() if isinstance(s, Channel)}
        wanted = {c.name: c for c in channels}
        for name, sink in running.items():
            if name not in wanted:
                self.dispatcher.remove_sink(name)
                await sink.close()
        for name, channel in wanted.items():
            current = running.get(name)
            if current is None or current.subscription.config != channel.subscription.config:
                self.dispatcher.add_sink(channel)

        before, after = self.settings.watcher, plan.settings.watcher
        if (before.log_format, before.log_level) != (after.log_format, after.log_level):
            logs.configure(after.log_format, after.log_level)
        self.settings = plan.settings

    async def _finish(self, delivering: asyncio.Task[None]) -> None:
        """Let a poll in flight finish, then flush deliveries, within `shutdown_timeout`.

        A poll cut short loses nothing: its commit is one synchronous transaction, so it either
        happened or the next start diffs the same listing again.
        """
        budget = self.settings.watcher.shutdown_timeout
        pollers = [*self.pollers, *self._retiring]
        try:
            async with asyncio.timeout(budget / 2):
                for poller in pollers:
                    await poller.idle()
        except TimeoutError:
            log.warning("a poll still waiting on its platform was abandoned")
            for poller in pollers:
                poller.cancel()
        assert self.dispatcher is not None
        try:
            await asyncio.wait_for(self.dispatcher.drain(), timeout=budget / 3)
        except TimeoutError:
            log.warning("undelivered events stay in the outbox for the next start")
        delivering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivering
