"""Feeds the outbox to the sinks: each sink on its own, retried with backoff, never lost.

The dispatcher decides which sinks receive an event (`targets`, before the event is written)
and the outbox holds one row per (event, sink). It delivers due rows sink by sink,
concurrently — a slow or dead sink delays only itself — and deletes a row only after its sink
succeeded, in the same transaction as the events the sink produced about it (`notification.
sent`, `output.fetched`). A failed delivery is retried with exponential backoff until
`max_age`; then it is given up with an error line and the sink's word on it.

`settle(timeout)` delivers what is due and what those deliveries cause in turn (the events the
sinks record), within a deadline: `watcher once` ends with it, and so does a shutdown. What is
still in flight at the deadline is abandoned — its rows stay in the outbox and go out on the
next start. Rows of a sink that is no longer configured are given up by `expire_orphans`.

An alert channel's rows pass the `gate` first (silences, mute windows, flapping, streaks:
`watcher.noise`): what it suppresses leaves the outbox with its `notification.suppressed`
event, what it holds waits there, in one transaction before anything is sent; rows released
from a hold are handed to the channel together, to go out as one digest.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from watcher.events import Event, EventType, follow_up
from watcher.noise.gate import Gate
from watcher.outbox import Pending
from watcher.redact import redact
from watcher.sinks.base import DeliveryError, Done, Sink
from watcher.store import Store

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
        on_events: Callable[[list[Event]], None] = lambda events: None,
        gate: Gate | None = None,
    ) -> None:
        self.store = store
        self.gate = gate
        self.on_events = on_events
        """Told of every event recorded through the dispatcher (log line, metrics, stream)."""
        self.sinks = {s.name: s for s in sinks}
        self.clock = clock
        self.backoff = backoff
        self.max_age = max_age
        self.batch = batch
        self._wakeup = asyncio.Event()
        self._busy: set[str] = set()
        self._tasks: dict[str, asyncio.Task[int]] = {}

    def route(self, event: Event) -> list[str]:
        """The sinks that must receive `event` (one outbox row each)."""
        return [name for name, sink in self.sinks.items() if sink.accepts(event)]

    def targets(self, events: Iterable[Event]) -> dict[str, list[str]]:
        """Where each event goes, decided before it is written (never inside the store's
        transaction: a sink's `accepts` is its own code)."""
        return {event.id: self.route(event) for event in events}

    def record(self, events: list[Event]) -> list[Event]:
        """Record events that arise outside a poll (state.restored, …) like any other; return
        those that were new."""
        now = self.clock()
        fresh = self.store.commit(
            events=events, targets=self.targets(events), now=now, now_ts=now.timestamp()
        )
        self._recorded(fresh)
        return fresh

    def _recorded(self, fresh: list[Event]) -> None:
        if fresh:
            self.on_events(fresh)
            self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    def add_sink(self, sink: Sink) -> None:
        """Serve (or, by the same name, replace) a sink from now on (config reload). Its rows
        already in the outbox are delivered by the new object; a replaced object's delivery
        in flight finishes first (a sink is drained by one task at a time)."""
        self.sinks[sink.name] = sink
        self.decide_held_again([sink])
        self.wake()

    def decide_held_again(self, sinks: Iterable[Sink] | None = None) -> None:
        """Make what the gated `sinks` (default: all) hold due now, to be decided again by
        their rules as they are now: at start, and when a reload changes a channel."""
        now = self.clock().timestamp()
        for sink in self.sinks.values() if sinks is None else sinks:
            if sink.noise is not None:
                self.store.release_held(sink.name, now)

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
        """Hand `items` to `sink` — an alert channel's past the gate first. True when all of
        them went; on a failure, what the sink did not mark delivered is retried or given up."""
        groups = [[p.event for p in items]]
        if self.gate is not None and sink.noise is not None:
            items, groups = self._gated(sink, self.gate, items)
            if not items:
                return True
        done, marked = self._receipt(items)
        try:
            for group in groups:
                if group:
                    await sink.deliver(group, done)
        except Exception as err:  # one bad sink must never break the others
            await self._failed(sink, [p for p in items if p.event.id not in marked], err, now)
            return False
        self.store.delivered([p for p in items if p.event.id not in marked])
        return True

    def _receipt(self, items: list[Pending]) -> tuple[Done, set[str]]:
        """The `done` of one delivery of `items` (see `Sink.deliver`), and the ids of the
        events it has marked delivered so far (the set grows as the sink calls it)."""
        by_id = {p.event.id: p for p in items}
        marked: set[str] = set()

        def done(event_ids: Sequence[str], produced: Sequence[Event] = ()) -> None:
            rows = [by_id[i] for i in event_ids if i in by_id and i not in marked]
            if rows or produced:
                fresh = self.store.delivered(
                    rows, produced, self.targets(produced), self.clock().timestamp()
                )
                marked.update(p.event.id for p in rows)
                self._recorded(fresh)

        return done, marked

    async def _failed(self, sink: Sink, items: list[Pending], err: Exception, now: float) -> None:
        """A delivery of `items` failed with `err`: give up those that cannot be retried or
        have waited `max_age` (the sink's, else the dispatcher's); retry the others later, with
        backoff."""
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

    def _gated(
        self, sink: Sink, gate: Gate, items: list[Pending]
    ) -> tuple[list[Pending], list[list[Event]]]:
        """What of `items` the gate lets through now, and the groups to hand the sink: the
        rows released from a hold (one digest), then the others. The gate's decisions are
        recorded first, in one transaction. A gate that fails lets everything through: noise
        control must never lose an alert."""
        try:
            verdict = gate.decide(sink, items, self.clock())
        except Exception as err:
            log.error("noise control failed; delivering without it", sink=sink.name,
                      error=redact(f"{type(err).__name__}: {err}"))  # fmt: skip
            return items, [[p.event for p in items]]
        if verdict.records:
            targets = self.targets(verdict.produced)
            for event_id in verdict.for_channel:
                targets[event_id] = sorted({*targets[event_id], sink.name})
            fresh = self.store.record_verdict(
                drop=verdict.drop,
                produced=verdict.produced,
                targets=targets,
                hold=verdict.hold,
                marks=verdict.marks,
                now_ts=self.clock().timestamp(),
            )
            self._recorded(fresh)
        passed = verdict.passed
        return [p for p in items if p.event.id in passed], [verdict.release, verdict.send]

    async def _abandon(self, sink: Sink, items: list[Pending], message: str) -> None:
        log.error("delivery abandoned", sink=sink.name, events=len(items), error=message)
        produced: list[Event] = []
        try:
            produced = await sink.abandoned([p.event for p in items], message)
        except Exception as err:
            log.warning("abandon hook failed", sink=sink.name, error=redact(str(err)))
        fresh = self.store.give_up(
            items, produced, self.targets(produced), self.clock().timestamp()
        )
        self._recorded(fresh)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: on every wake-up, and when the next retry falls due.

        Each sink drains in its own task, so a channel stuck on a slow send holds up nothing
        but itself; on the next wake-up the other sinks go ahead. Deliveries in flight when
        `stop` is set are left running for `settle` to finish or abandon.
        """
        while not stop.is_set():
            self._wakeup.clear()
            self._start_passes()
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

    def _start_passes(self) -> None:
        """A delivery pass for every sink that has none running."""
        for name, sink in self.sinks.items():
            task = self._tasks.get(name)
            if task is None or task.done():
                self._tasks[name] = asyncio.create_task(self._drain_guarded(sink))

    async def settle(self, timeout: float) -> bool:
        """Deliver everything that is due, and what that delivery records in turn, until a
        pass finds nothing more — or `timeout` seconds pass: then the deliveries in flight are
        abandoned (their rows stay in the outbox). True when everything due went out."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    running = [t for t in self._tasks.values() if not t.done()]
                    if running:
                        await asyncio.wait(running)
                    self._start_passes()
                    if sum(await asyncio.gather(*self._tasks.values())) == 0:
                        return True
        except TimeoutError:
            busy = sorted(name for name, task in self._tasks.items() if not task.done())
            log.warning("deliveries abandoned at the deadline; they stay in the outbox",
                        sinks=busy, timeout_s=timeout)  # fmt: skip
            await self.abandon()
            return False

    async def abandon(self) -> None:
        """Cancel every delivery in flight; its rows stay undelivered for the next start. (A
        send that apprise runs in a thread cannot be stopped: the process exits without it.)"""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    async def expire_orphans(self, max_age: Callable[[str], float]) -> int:
        """Give up the rows of targets that no sink serves any more (a channel or a whole
        subscription removed from the config) once they are `max_age(target)` seconds old —
        0 gives them up at once. Each becomes a `notification.failed` ("channel removed").
        Returns how many rows left the outbox."""
        now = self.clock().timestamp()
        stale = [
            p
            for p in self.store.orphans(served=list(self.sinks))
            if now - p.first_at >= max_age(p.target)
        ]
        if not stale:
            return 0
        for target in sorted({p.target for p in stale}):
            log.error("undelivered events of a removed channel given up", target=target,
                      events=sum(1 for p in stale if p.target == target))  # fmt: skip
        ts = self.clock()
        produced = [orphaned(p, ts) for p in stale]
        fresh = self.store.give_up(stale, produced, self.targets(produced), ts.timestamp())
        self._recorded(fresh)
        return len(stale)

    async def _drain_guarded(self, sink: Sink) -> int:
        try:
            return await self._drain_sink(sink)
        except Exception as err:  # e.g. the state file failing mid-drain: retried next wake-up
            log.error(
                "delivery pass failed", sink=sink.name, error=redact(f"{type(err).__name__}: {err}")
            )
            return 0

    async def close(self) -> None:
        await self.abandon()
        for sink in self.sinks.values():
            try:
                await sink.close()
            except Exception as err:
                log.warning("sink close failed", sink=sink.name, error=redact(str(err)))


def orphaned(item: Pending, ts: datetime) -> Event:
    """`notification.failed` for a row whose channel was removed from the config."""
    subscription = item.target.split(":")[1] if item.target.startswith("notify:") else None
    return follow_up(
        item.event,
        EventType.NOTIFICATION_FAILED,
        by=item.target,
        ts=ts,
        message="channel removed",
        reason="channel removed",
        subscription=subscription,
        channel=item.target,
    )
