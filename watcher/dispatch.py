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
        try:
            await sink.deliver([p.event for p in items])
        except Exception as err:  # one bad sink must never break the others
            retryable = not isinstance(err, DeliveryError) or err.retryable
            message = redact(str(err) or type(err).__name__)
            expired: list[Pending] = []
            retry: list[Pending] = []
            for p in items:
                too_old = now - p.first_at >= self.max_age
                (expired if too_old or not retryable else retry).append(p)
            if expired:
                self.store.give_up(expired)
                log.error("delivery abandoned", sink=sink.name, events=len(expired), error=message)
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
        self.store.delivered(items)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: on every wake-up, and when the next retry falls due."""
        while not stop.is_set():
            self._wakeup.clear()
            timeout = 60.0
            try:
                await self.drain()
                next_due = self.store.next_due()
            except Exception as err:  # the state file failing: say so, keep trying
                log.error(
                    "outbox unreadable; retrying", error=redact(f"{type(err).__name__}: {err}")
                )
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

    async def close(self) -> None:
        for sink in self.sinks.values():
            try:
                await sink.close()
            except Exception as err:
                log.warning("sink close failed", sink=sink.name, error=redact(str(err)))
