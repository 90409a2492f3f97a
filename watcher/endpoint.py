"""The optional HTTP endpoint of the daemon (`[http] listen`), served with aiohttp.

    /              the status page (`watcher.page`): sources, agents, recent events, the outbox
    /api/status    the same view as JSON
    /api/silences  silences: read openly, written with the `[http] token_file` bearer token
                   (`watcher.noise.api`)
    /healthz       200 while the process serves requests (the container HEALTHCHECK)
    /readyz        200 when every enabled source polled successfully within 3 × its
                   poll_interval, else 503; the JSON body names the stale sources
    /metrics       Prometheus text format (`watcher.metrics`)
    /events        server-sent events: every event's JSON as it is recorded, for other
                   containers that want the stream live; a client that reconnects with
                   `Last-Event-ID` (or asks `?after=ID`) first gets the events recorded after
                   that one

Each `/events` client has a bounded queue: a client that does not keep up is dropped (its
stream ends; it may reconnect) rather than slowing the daemon or growing its memory.

A replay and the live stream meet without a gap or a repeat: the client is subscribed and the
state file read in one step, with nothing awaited in between, and every event is published in
the same step as the commit that records it — so an event is either in the state file when it
is read, or queued for the client after. A replay is bounded (`REPLAY_LIMIT`): a client further
behind gets that many and its stream ends, and it reconnects from the last one it got.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from watcher.errors import WatcherError
from watcher.history import Replay
from watcher.live import EventStream, Readiness, encode
from watcher.metrics import CONTENT_TYPE, Metrics
from watcher.noise.api import SilenceApi
from watcher.page import StatusPage, View

if TYPE_CHECKING:
    from watcher.live import _Client

log = structlog.get_logger("watcher.endpoint")

HEARTBEAT = 15.0
"""Seconds of silence after which an SSE comment is sent, so idle proxies keep the stream and a
vanished client is noticed."""
WRITE_TIMEOUT = 10.0
"""Seconds one write to an `/events` client may block before the client is dropped."""
MAX_CLIENTS = 64
"""At most this many `/events` clients at once; one more is answered 503."""
REPLAY_LIMIT = 500
"""Events one `/events` connection replays at most (see the module docstring)."""

Replayer = Callable[[str, int], Replay | None]
"""The events recorded after an event id, at most so many (`Store.events_after`)."""


class Endpoint:
    """The aiohttp server behind `[http] listen`."""

    def __init__(
        self,
        *,
        readiness: Callable[[], Readiness],
        metrics: Metrics,
        stream: EventStream,
        view: View,
        replay: Replayer,
        silences: SilenceApi | None = None,
    ) -> None:
        self.readiness = readiness
        self.metrics = metrics
        self.stream = stream
        self.page = StatusPage(view)
        self.replay = replay
        self.silences = silences
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    def web_app(self) -> web.Application:
        app = web.Application()
        app.router.add_routes(self.page.routes())
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/events", self._events)
        if self.silences is not None:
            self.silences.add_routes(app.router)
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
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        log.info("http endpoint listening", host=host, port=port,
                 status_page=f"http://{shown}:{port}/")  # fmt: skip
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
        last = request.headers.get("Last-Event-ID") or request.query.get("after")
        client = self.stream.subscribe(request.remote or "?")
        replay = self.replay(last, REPLAY_LIMIT) if last else None  # no await since subscribe
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
            if last and replay is None:
                await response.write(b": that event is no longer held; live from here\n\n")
            if replay is not None:
                for event in replay.events:
                    await self._write(response, encode(event))
            if replay is None or not replay.more:  # else: it reconnects from the last one
                await self._follow(response, client)
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

    async def _follow(self, response: web.StreamResponse, client: _Client) -> None:
        """Write the client's live events until its stream ends (None)."""
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT):
                    chunk = await client.queue.get()
            except TimeoutError:
                chunk = b": keepalive\n\n"
            if chunk is None:
                return
            await self._write(response, chunk)

    @staticmethod
    async def _write(response: web.StreamResponse, chunk: bytes) -> None:
        async with asyncio.timeout(WRITE_TIMEOUT):
            await response.write(chunk)
