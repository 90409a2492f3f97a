"""Feeds the outbox to the sinks: each sink on its own, retried with backoff, never lost.

Every event was written to the outbox with one row per sink that accepts it (`route`). The
dispatcher delivers due rows sink by sink, concurrently — a slow or dead sink delays only
itself — and deletes a row only after its sink succeeded. A failed delivery is retried with
exponential backoff until `max_age`; then it is given up with an error line.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from watcher.models import Event
from watcher.redact import redact
from watcher.sinks.base import DeliveryError, Sink
from watcher.store import Pending, Store

log = structlog.get_logger("watcher.dispatch")


@dataclass(frozen=True, slots=True)
class Backoff:
    """`min(cap, base·factor^attempts)`, with up to `jitter` of it added at random."""

    base: float = 5.0
    factor: float = 2.0
    cap: float = 600.0
    jitter: float = 0.2

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        plain = min(self.cap, self.base * self.factor**attempts)
        return plain * (1 + self.jitter * rand())


class Dispatcher:
    def __init__(
        self,
        store: Store,
        sinks: Sequence[Sink],
        *,
        clock: Callable[[], datetime],
        backoff: Backoff = Backoff(),
        max_age: float = 24 * 3600,
        batch: int = 500,
    ) -> None:
        self.store = store
        self.sinks = {s.name: s for s in sinks}
        self.clock = clock
        self.backoff = backoff
        self.max_age = max_age
        self.batch = batch
        self._wakeup = asyncio.Event()
        self._busy: set[str] = set()

    def route(self, event: Event) -> list[str]:
        """The sinks that must receive `event` (one outbox row each)."""
        return [name for name, sink in self.sinks.items() if sink.accepts(event)]

    def wake(self) -> None:
        self._wakeup.set()

    def add_sink(self, sink: Sink) -> None:
        """Serve (or, by the same name, replace) a sink from now on (config reload). Its rows
        already in the outbox are delivered by the new object; a replaced object's delivery
        in flight finishes first (a sink is drained by one task at a time)."""
        self.sinks[sink.name] = sink
        self.wake()

    def remove_sink(self, name: str) -> Sink | None:
        """Stop routing and delivering to a sink (config reload). Its undelivered outbox rows
        stay, waiting for a sink of that name to come back; the caller closes the sink."""
        return self.sinks.pop(name, None)

    async def drain(self) -> int:
        """Deliver everything that is due now; return how many rows were delivered."""
        results = await asyncio.gather(*(self._drain_sink(sink) for sink in self.sinks.values()))
        return sum(results)

    async def _drain_sink(self, sink: Sink) -> int:
        if sink.name in self._busy:  # already being drained by another caller
            return 0
        self._busy.add(sink.name)
        try:
            done = 0
            while True:
                now = self.clock().timestamp()
                due = self.store.due(now, limit=self.batch, targets=[sink.name])
                if not due:
                    return done
                if not await self._deliver(sink, due, now):
                    return done
                done += len(due)
        finally:
            self._busy.discard(sink.name)

    async def _deliver(self, sink: Sink, items: list[Pending], now: float) -> bool:
        by_id = {p.event.id: p for p in items}
        marked: set[str] = set()

        def done(event_ids: Sequence[str]) -> None:
            fresh = [by_id[i] for i in event_ids if i in by_id and i not in marked]
            if fresh:
                self.store.delivered(fresh)
                marked.update(p.event.id for p in fresh)

        try:
            await sink.deliver([p.event for p in items], done)
        except Exception as err:  # one bad sink must never break the others
            items = [p for p in items if p.event.id not in marked]
            retryable = not isinstance(err, DeliveryError) or err.retryable
            message = redact(str(err) or type(err).__name__)
            max_age = sink.max_age or self.max_age
            expired: list[Pending] = []
            retry: list[Pending] = []
            for p in items:
                too_old = now - p.first_at >= max_age
                (expired if too_old or not retryable else retry).append(p)
            if expired:
                await self._abandon(sink, expired, message)
            if retry:
                self.store.retry_later(
                    retry,
                    error=message,
                    next_at=lambda p: now + self.backoff.delay(p.attempts),
                )
                log.warning(
                    "delivery failed; will retry", sink=sink.name, events=len(retry), error=message
                )
            return False
        self.store.delivered([p for p in items if p.event.id not in marked])
        return True

    async def _abandon(self, sink: Sink, items: list[Pending], message: str) -> None:
        log.error("delivery abandoned", sink=sink.name, events=len(items), error=message)
        try:
            await sink.abandoned([p.event for p in items], message)
        except Exception as err:
            log.warning("abandon hook failed", sink=sink.name, error=redact(str(err)))
        self.store.give_up(items)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: on every wake-up, and when the next retry falls due.

        Each sink drains in its own task, so a channel stuck on a slow send holds up nothing
        but itself; on the next wake-up the other sinks go ahead.
        """
        tasks: dict[str, asyncio.Task[int]] = {}
        try:
            while not stop.is_set():
                self._wakeup.clear()
                for name, sink in self.sinks.items():
                    if name not in tasks or tasks[name].done():
                        tasks[name] = asyncio.create_task(self._drain_guarded(sink))
                timeout = 60.0
                try:
                    next_due = self.store.next_due(targets=list(self.sinks))
                except Exception as err:  # the state file failing: say so, keep trying
                    log.error("outbox unreadable", error=redact(f"{type(err).__name__}: {err}"))
                    next_due = self.clock().timestamp() + 5
                if next_due is not None:
                    timeout = min(timeout, max(0.05, next_due - self.clock().timestamp()))
                waiter = asyncio.ensure_future(self._wakeup.wait())
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait(
                        {waiter, stopper}, timeout=timeout, return_when="FIRST_COMPLETED"
                    )
                finally:
                    waiter.cancel()
                    stopper.cancel()
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    async def _drain_guarded(self, sink: Sink) -> int:
        try:
            return await self._drain_sink(sink)
        except Exception as err:  # e.g. the state file failing mid-drain: retried next wake-up
            log.error(
                "delivery pass failed", sink=sink.name, error=redact(f"{type(err).__name__}: {err}")
            )
            return 0

    async def close(self) -> None:
        for sink in self.sinks.values():
            try:
                await sink.close()
            except Exception as err:
                log.warning("sink close failed", sink=sink.name, error=redact(str(err)))
