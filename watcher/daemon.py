"""`watcher run`: an `App` on a schedule, until SIGTERM/SIGINT.

- The scheduler (APScheduler, on the event loop) starts each source's poll every
  `poll_interval_active`, housekeeping every hour, the state-file watch every few seconds and,
  under systemd, the watchdog ping. A poll runs in a task of its own that the scheduler's job
  only waits on, so stopping the scheduler never cuts a poll short by accident.
- SIGHUP reloads the config file: sources and channels added, removed or changed take effect,
  state and undelivered events are kept.
- Shutdown is bounded by `shutdown_timeout`: polling stops; a poll still waiting on its platform
  gets a short grace, then is abandoned (it has not committed: its commit is one synchronous
  transaction); deliveries in flight get what is left of the timeout, then are abandoned —
  their rows stay in the outbox and go out once on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watcher import logs
from watcher.app import App, build_source
from watcher.config import ReloadPlan, Settings, load_settings, plan_reload
from watcher.errors import ConfigError
from watcher.poller import SourcePoller
from watcher.redact import redact
from watcher.sdnotify import Notifier
from watcher.sinks.alerting import AlertChannel
from watcher.sources.base import Source
from watcher.upkeep import expire_orphans, housekeeping, settle

log = structlog.get_logger("watcher")

Loader = Callable[[Path], Settings]
"""Reads the config file again on SIGHUP; raises `ConfigError` (the CLI adds its overrides)."""

STATE_CHECK_INTERVAL = 2.0
"""Seconds between two looks at whether the state file is still the one open."""
POLL_GRACE = 2.0
"""Seconds, at most, that shutdown lets a poll waiting on its platform go on."""


class Daemon:
    """Runs `app` until stopped. `run()` returns the exit code: 0, or 1 when the App failed."""

    def __init__(
        self, app: App, *, loader: Loader = load_settings, notifier: Notifier | None = None
    ) -> None:
        self.app = app
        self.loader = loader
        self.notifier = notifier or Notifier()
        self.scheduler: AsyncIOScheduler | None = None
        self._polls: dict[str, asyncio.Task[object]] = {}
        self._stopping = False
        self._reloading: asyncio.Task[bool] | None = None
        self._reload_again = False
        self._delivering: asyncio.Task[None] | None = None

    @property
    def settings(self) -> Settings:
        return self.app.settings

    async def run(self, stop: asyncio.Event | None = None) -> int:
        """Poll on schedule and deliver until SIGTERM/SIGINT (or `stop`), then shut down.

        Under systemd (`$NOTIFY_SOCKET`) the daemon says READY=1 once the store is open, the
        endpoint listens and the scheduler runs; a scheduler job on the event loop sends
        WATCHDOG=1, so a hung loop stops the pings and gets restarted; STOPPING=1 opens the
        shutdown.
        """
        app = self.app
        assert app.dispatcher is not None
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        http = await app.serve_http()
        handlers = {signal.SIGTERM: stop.set, signal.SIGINT: stop.set}
        handlers[signal.SIGHUP] = self.request_reload
        for sig, handler in handlers.items():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, handler)
        self.scheduler = scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        for poller in app.pollers:
            self._schedule(poller)
        self._every(self._housekeeping, "housekeeping", 3600, now=True)
        self._every(self._watch_state, "state", STATE_CHECK_INTERVAL)
        if self.notifier.watchdog_interval is not None:
            self._every(self._watchdog, "watchdog", self.notifier.watchdog_interval)
        log.info(
            "watcher started",
            sources=[p.name for p in app.pollers],
            state_path=str(self.settings.watcher.state_path),
            http=f"{http[0]}:{http[1]}" if http else None,
        )
        scheduler.start()
        self._delivering = asyncio.create_task(app.dispatcher.run(stop), name="dispatcher")
        self.notifier.ready(f"watching {len(app.pollers)} source(s)")
        halted = asyncio.ensure_future(app.halted.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({halted, stopped}, return_when="FIRST_COMPLETED")
        finally:
            halted.cancel()
            stopped.cancel()
            stop.set()
            await self._shutdown()
            for sig in handlers:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            log.info("watcher stopped")
        return 1 if app.failure is not None else 0

    # --- jobs --------------------------------------------------------------------------------

    def _every(
        self, job: Callable[[], object], name: str, seconds: float, now: bool = False
    ) -> None:
        assert self.scheduler is not None
        first = {"next_run_time": datetime.now(UTC)} if now else {}  # None would mean paused
        self.scheduler.add_job(
            job,
            "interval",
            seconds=seconds,
            id=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds)),
            **first,
        )

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

    async def _poll(self, poller: SourcePoller) -> None:
        """The scheduler's poll job. The poll runs in its own task, which the job waits on
        shielded: when the scheduler stops (and cancels its jobs), the poll goes on and the
        shutdown decides how long it may take."""
        task = self._polls.get(poller.name)
        if task is None or task.done():
            task = asyncio.ensure_future(self.app.poll(poller))
            self._polls[poller.name] = task
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not self._stopping:
                raise

    async def _housekeeping(self) -> None:
        await housekeeping(self.app)

    async def _watch_state(self) -> None:
        self.app.watch_state()

    async def _watchdog(self) -> None:
        """WATCHDOG=1, from a scheduler job on the event loop. Withheld when the dispatcher task
        has died, so that systemd restarts a daemon that would no longer deliver."""
        if self._delivering is not None and self._delivering.done():
            log.error("the dispatcher stopped; withholding the watchdog ping")
            return
        self.notifier.watchdog()

    # --- shutdown ----------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Stop polling, let polls and deliveries finish within `shutdown_timeout`, abandon
        what is left (it stays in the outbox), close the endpoint."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.watcher.shutdown_timeout
        log.info("watcher stopping")
        self.notifier.stopping()
        self._stopping = True
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        await self._cancel_reload()
        await self._finish_polls()
        if self._delivering is not None:
            await asyncio.gather(self._delivering, return_exceptions=True)
        if self.app.failure is None and self.app.dispatcher is not None:
            await settle(self.app, max(0.0, deadline - loop.time()))
        if self.app.endpoint is not None:
            await self.app.endpoint.stop()
            self.app.endpoint = None

    async def _finish_polls(self) -> None:
        """Give the polls in flight a short grace (`POLL_GRACE`, at most a quarter of
        `shutdown_timeout`), then abandon those still waiting on their platform: none of them
        has written anything yet."""
        polls = [t for t in self._polls.values() if not t.done()]
        if not polls:
            return
        grace = min(POLL_GRACE, self.settings.watcher.shutdown_timeout / 4)
        _, pending = await asyncio.wait(polls, timeout=grace)
        if pending:
            log.info("a poll still waiting on its platform was abandoned; nothing of it "
                     "was written", polls=len(pending))  # fmt: skip
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

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
        undelivered events are kept (the rows of a removed channel are given up after its
        subscription's `max_age`, at once when the subscription itself is gone). An invalid
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
            self.app.metrics.observe_reload("rejected")
            return False
        finally:
            self.notifier.ready()

    async def _reload(self, path: Path) -> bool:
        app = self.app
        try:
            loaded = self.loader(path)
            plan = plan_reload(self.settings, loaded)
            # Build what is new before touching what runs, so a failure changes nothing.
            sources = [build_source(sc, app.http) for sc in [*plan.added, *plan.changed]]
            channels = app.channels(plan.settings)
        except (ConfigError, ValueError) as err:
            problems = err.problems if isinstance(err, ConfigError) else [redact(str(err))]
            for problem in problems:
                log.error("config reload rejected", config=str(path), problem=problem)
            app.metrics.observe_reload("rejected")
            return False
        await self._apply(plan, sources, channels)
        app.metrics.observe_reload("applied")
        changes = plan.summary()
        log.info("config reloaded", config=str(path), changed=bool(changes), **changes)
        if plan.needs_restart:
            log.warning("config change takes effect at the next start", keys=plan.needs_restart)
        await expire_orphans(app)
        return True

    async def _apply(
        self, plan: ReloadPlan, sources: list[Source], channels: list[AlertChannel]
    ) -> None:
        """Run with the settings of `plan`: swap pollers and their scheduler jobs (a poller is
        built with the rules in force), alert channels and the outputs sink to match."""
        before, self.app.settings = self.app.settings, plan.settings
        await self._apply_sources(plan, sources)
        await self._apply_channels(channels)
        if plan.outputs_changed:
            await self._apply_outputs()
        self._apply_logging(before, plan.settings)

    async def _apply_sources(self, plan: ReloadPlan, sources: list[Source]) -> None:
        """Retire the pollers of sources removed or changed, start one for each source built
        anew (`sources`: added or changed), keep the others; in the order of the config."""
        running = {p.name: p for p in self.app.pollers}
        await self._retire([running[n] for n in [*plan.removed, *(s.name for s in plan.changed)]])
        fresh = {source.name: source for source in sources}
        pollers: list[SourcePoller] = []
        for sc in plan.settings.sources:
            if sc.name in fresh:
                pollers.append(self._start(fresh[sc.name], running.get(sc.name)))
            elif sc.enabled and sc.name in running:
                pollers.append(running[sc.name])
        self.app.pollers = pollers

    async def _retire(self, leaving: list[SourcePoller]) -> None:
        """Stop polling with `leaving`; a poll of theirs in flight commits first, so that a
        successor loads its state."""
        # Out of the list first: a poll job that starts from now on sees it retired.
        self.app.pollers = [p for p in self.app.pollers if p not in leaving]
        for poller in leaving:
            self._unschedule(poller.name)
        for poller in leaving:
            await poller.idle()

    def _start(self, source: Source, predecessor: SourcePoller | None) -> SourcePoller:
        """A poller for `source`, scheduled; a restarted source stays as fresh as it was."""
        poller = self.app.poller(source)
        if predecessor is not None:
            poller.last_success = predecessor.last_success
        self._schedule(poller)
        return poller

    async def _apply_channels(self, channels: list[AlertChannel]) -> None:
        """Close the alert channels no longer wanted; add those that are new or whose
        subscription changed (replacing the running one of that name)."""
        dispatcher = self.app.dispatcher
        assert dispatcher is not None
        running = {n: s for n, s in dispatcher.sinks.items() if isinstance(s, AlertChannel)}
        wanted = {c.name: c for c in channels}
        for name, sink in running.items():
            if name not in wanted:
                dispatcher.remove_sink(name)
                await sink.close()
        for name, channel in wanted.items():
            current = running.get(name)
            if current is None or not current.subscription.same_as(channel.subscription):
                dispatcher.add_sink(channel)

    async def _apply_outputs(self) -> None:
        """Replace the outputs sink with one of the new `[outputs]` (none when disabled); the
        runs waiting for it stay in the outbox for the new one."""
        from watcher.sinks.outputs import OutputsSink

        dispatcher = self.app.dispatcher
        assert dispatcher is not None
        old = dispatcher.remove_sink(OutputsSink.name)
        if old is not None:
            await old.close()
        sink = self.app.outputs_sink()
        if sink is not None:
            dispatcher.add_sink(sink)

    def _apply_logging(self, old: Settings, new: Settings) -> None:
        """Reconfigure logging when its format or level changed."""
        before, after = old.watcher, new.watcher
        if (before.log_format, before.log_level) != (after.log_format, after.log_level):
            logs.configure(after.log_format, after.log_level)
