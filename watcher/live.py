"""What the daemon keeps up to date for the outside to look at: whether it is ready (every
source polled successfully of late; each change of it logged once, `ReadinessWatch`) and the
live stream of events. No web server here: the HTTP endpoint (`watcher.endpoint`) serves these,
and is only loaded when it is configured.

Each `/events` client has a bounded queue: a client that does not keep up is dropped (its
stream ends; it may reconnect) rather than slowing the daemon or growing its memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from watcher.codec import iso
from watcher.events import Event
from watcher.poller import SourcePoller

log = structlog.get_logger("watcher.endpoint")
status_log = structlog.get_logger("watcher")
"""Readiness changes are news of the daemon itself, not of its endpoint."""

CLIENT_QUEUE = 1000
"""Events buffered per `/events` client before it counts as too slow and is dropped."""


STALE_INTERVALS = 3
"""A source is stale when its last successful poll is older than this many poll_intervals."""


@dataclass(frozen=True, slots=True)
class Readiness:
    """The answer of `/readyz`: ready, or which sources are stale and why."""

    ready: bool
    stale: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"ready": self.ready, "stale": self.stale}


def assess(pollers: Iterable[SourcePoller], now: datetime) -> Readiness:
    """Ready when every polled source succeeded within `STALE_INTERVALS` × its poll_interval
    of `now` (a source that has not succeeded since start-up is stale)."""
    stale: list[dict[str, Any]] = []
    for poller in pollers:
        limit = STALE_INTERVALS * poller.source.config.poll_interval
        last = poller.last_success
        if last is not None and (now - last).total_seconds() <= limit:
            continue
        stale.append(
            {
                "source": poller.name,
                "last_success": iso(last),
                "max_age_s": limit,
                "failing": poller.health.failing,
                "error": poller.health.last_error,
            }
        )
    return Readiness(not stale, stale)


class ReadinessWatch:
    """Readiness of the running pollers, assessed when asked (after each poll, on `/readyz`);
    a change is logged once. Not ready until the first assessment finds every source fresh."""

    def __init__(
        self, pollers: Callable[[], Iterable[SourcePoller]], clock: Callable[[], datetime]
    ) -> None:
        self._pollers = pollers
        self._clock = clock
        self._ready = False  # readiness last seen, to log its changes once

    def check(self) -> Readiness:
        state = assess(self._pollers(), self._clock())
        if state.ready != self._ready:
            self._ready = state.ready
            if state.ready:
                status_log.info("ready: every source polled successfully within 3 intervals")
            else:
                stale = [s["source"] for s in state.stale]
                status_log.warning("not ready: stale sources", stale=stale)
        return state


class _Client:
    """One `/events` subscriber: its queue of encoded SSE messages; None ends the stream."""

    __slots__ = ("dropped", "peer", "queue")

    def __init__(self, peer: str, maxsize: int) -> None:
        self.peer = peer
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize)
        self.dropped = False


class EventStream:
    """Fans recorded events out to the connected `/events` clients; never blocks the caller."""

    def __init__(self, maxsize: int = CLIENT_QUEUE) -> None:
        self._maxsize = maxsize
        self._clients: set[_Client] = set()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def subscribe(self, peer: str = "?") -> _Client:
        client = _Client(peer, self._maxsize)
        self._clients.add(client)
        return client

    def unsubscribe(self, client: _Client) -> None:
        self._clients.discard(client)

    def publish(self, events: Iterable[Event]) -> None:
        """Queue each event for every client; a client whose queue is full is dropped."""
        if not self._clients:
            return
        for event in events:
            chunk = encode(event)
            for client in list(self._clients):
                try:
                    client.queue.put_nowait(chunk)
                except asyncio.QueueFull:
                    self._drop(client)

    def close(self) -> None:
        """End every stream (shutdown)."""
        for client in list(self._clients):
            self._end(client)

    def _drop(self, client: _Client) -> None:
        client.dropped = True
        log.warning("events client too slow; dropped", peer=client.peer, queued=self._maxsize)
        self._end(client)

    def _end(self, client: _Client) -> None:
        self._clients.discard(client)
        while not client.queue.empty():  # make room for the end marker
            client.queue.get_nowait()
        client.queue.put_nowait(None)


def encode(event: Event) -> bytes:
    """One server-sent event: the event id, its type, and its JSON (as in the events file)."""
    data = json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()
