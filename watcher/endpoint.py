"""The optional HTTP endpoint of the daemon (`[http] listen`), served with aiohttp.

    /healthz   200 while the process serves requests (the container HEALTHCHECK)
    /readyz    200 when every enabled source polled successfully within 3 × its poll_interval,
               else 503; the JSON body names the stale sources
    /metrics   Prometheus text format (`watcher.metrics`)
    /events    server-sent events: every event's JSON as it is recorded, for other containers
               that want the stream live

Each `/events` client has a bounded queue: a client that does not keep up is dropped (its
stream ends; it may reconnect) rather than slowing the daemon or growing its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from watcher.errors import WatcherError
from watcher.metrics import CONTENT_TYPE, Metrics
from watcher.models import Event, iso
from watcher.poller import SourcePoller

log = structlog.get_logger("watcher.endpoint")

CLIENT_QUEUE = 1000
"""Events buffered per `/events` client before it counts as too slow and is dropped."""
HEARTBEAT = 15.0
"""Seconds of silence after which an SSE comment is sent, so idle proxies keep the stream and a
vanished client is noticed."""
WRITE_TIMEOUT = 10.0
"""Seconds one write to an `/events` client may block before the client is dropped."""
MAX_CLIENTS = 64
"""At most this many `/events` clients at once; one more is answered 503."""


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


class Endpoint:
    """The aiohttp server behind `[http] listen`."""

    def __init__(
        self,
        *,
        readiness: Callable[[], Readiness],
        metrics: Metrics,
        stream: EventStream,
    ) -> None:
        self.readiness = readiness
        self.metrics = metrics
        self.stream = stream
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    def web_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/events", self._events)
        return app

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port (port 0: any free port); return the address actually bound."""
        runner = web.AppRunner(self.web_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as err:  # the port is taken, the address is not ours, …
            await runner.cleanup()
            reason = err.strerror or str(err)
            raise WatcherError(f"http.listen: cannot listen on {host}:{port}: {reason}") from None
        self._runner = runner
        bound = runner.addresses[0]
        self.address = (str(bound[0]), int(bound[1]))
        log.info("http endpoint listening", host=self.address[0], port=self.address[1])
        return self.address

    async def stop(self) -> None:
        self.stream.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- handlers ----------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        state = self.readiness()
        return web.json_response(state.body(), status=200 if state.ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self.stream.clients >= MAX_CLIENTS:
            raise web.HTTPServiceUnavailable(text="too many event-stream clients\n")
        client = self.stream.subscribe(request.remote or "?")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            }
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 5000\n\n")
            while True:
                try:
                    async with asyncio.timeout(HEARTBEAT):
                        chunk = await client.queue.get()
                except TimeoutError:
                    chunk = b": keepalive\n\n"
                if chunk is None:
                    break
                async with asyncio.timeout(WRITE_TIMEOUT):
                    await response.write(chunk)
        except ConnectionError:
            return response  # the client went away
        except TimeoutError:  # the client stopped reading: cut it off rather than wait
            if request.transport is not None:
                request.transport.abort()
            return response
        finally:
            self.stream.unsubscribe(client)
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(WRITE_TIMEOUT):
                await response.write_eof()
        return response
