"""What every simulated platform shares: scripted faults, the request log, latency, the rate limit.

A world (`World` for Sequentum Cloud, `AccWorld`, `AutomationWorld`) inherits `SimServer`, so
tests script misbehaviour the same way everywhere (`world.inject("/api/…", kind="truncated")`).
`fault_middlewares` gives the two aiohttp middlewares that apply it, parameterised by the
platform's own error body, so an injected HTTP error looks like that platform's errors.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from watcher_sim.ratelimit import SlidingWindow

Clock = Callable[[], datetime]

FAULT_KINDS = frozenset({"http", "problem", "html", "truncated", "stall", "reset", "cut"})

ErrorBody = Callable[[int, str], Any]
"""The JSON body a platform sends with an error status and message."""


@dataclass(slots=True)
class Fault:
    """A scripted misbehaviour of the server for requests whose path matches `path` (fnmatch).

    Kinds: "http" (an error status with the platform's error body), "problem" (RFC 7807 body),
    "html" (an HTML page), "truncated" (JSON cut in the middle), "stall" (answer late),
    "reset" (drop the connection with a TCP RST), "cut" (a 200 whose headers announce the real
    body, then half of it and the connection closed: a download dying half-way). `times` counts
    down; -1 means forever. `after` lets that many matching requests through first.

    Note: an aiohttp ClientSession silently retries an idempotent request (GET) once when the
    server drops the connection, so a GET only fails with a "reset" fault of `times` >= 2
    (pytest-aiohttp's test client does not retry).
    """

    path: str = "*"
    kind: str = "http"
    status: int | None = None  # None: 503 for http/problem, 200 for html/truncated
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: str | bytes | None = None
    delay: float = 0.0  # seconds to wait before answering (any kind; the point of "stall")
    method: str | None = None  # only requests with this method, when set
    after: int = 0  # matching requests answered normally before the fault begins
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times == 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return fnmatchcase(path, self.path)


@dataclass(slots=True)
class Call:
    """One request as the server saw it, for tests to assert on: `query` is the query string's
    last value per name, `body` the JSON of a request that had one (its text if it was not
    JSON), `status` the status the server answered with (None until it has)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    status: int | None = None


class SimServer:
    """The scripted faults, request log, latency, byte count and rate limit of a platform."""

    def __init__(
        self,
        *,
        now: Clock,
        latency: float = 0.0,
        rate_limit: int | None = None,
        rate_window: float = 60.0,
    ) -> None:
        self.now = now
        self.latency = latency
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.calls: list[Call] = []
        self.bytes_sent = 0
        #: None: no limit. Otherwise requests per credential within any `rate_window` seconds.
        self.limiter = SlidingWindow(rate_limit, rate_window) if rate_limit is not None else None
        self.throttled = 0
        self.throttled_by_key: Counter[str] = Counter()

    def admit(self, credential: str) -> int | None:
        """Count a request of an authenticated `credential` against the rate limit: None when
        it may be answered, else the seconds to wait (the request is refused, and counted in
        `throttled`)."""
        if self.limiter is None:
            return None
        wait = self.limiter.admit(credential, self.now())
        if wait is not None:
            self.throttled += 1
            self.throttled_by_key[credential] += 1
        return wait

    def inject(
        self,
        path: str = "*",
        *,
        kind: str = "http",
        status: int | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: str | bytes | None = None,
        delay: float = 0.0,
        method: str | None = None,
        after: int = 0,
    ) -> Fault:
        """Script a fault for the next `times` requests whose path matches `path` (see `Fault`)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(FAULT_KINDS)}")
        fault = Fault(path, kind, status, times, dict(headers or {}), body, delay, method, after)
        self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault matching a request, with one use counted off it; None if none."""
        for fault in self.faults:
            if fault.matches(method, path):
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.hits += 1
                if fault.times > 0:
                    fault.times -= 1
                return fault
        return None

    def clear_faults(self) -> None:
        self.faults.clear()

    def record(self, request: web.Request, body: Any) -> Call:
        """Log a request in `requests` (method, path and query) and `calls`."""
        self.requests.append((request.method, request.path_qs))
        call = Call(request.method, request.path, dict(request.query), body)
        self.calls.append(call)
        return call

    def reset_counters(self) -> None:
        self.requests.clear()
        self.calls.clear()
        self.bytes_sent = 0
        self.throttled = 0
        self.throttled_by_key.clear()


def phrase(status: int) -> str:
    """The reason phrase of an HTTP status ("Not Found"), "Error" for an unknown one."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def dumps(data: Any) -> str:
    """Compact JSON, as the simulated platforms send it."""
    return json.dumps(data, separators=(",", ":"))


def fault_middlewares(
    key: web.AppKey[Any], error_body: ErrorBody, html_page: str
) -> tuple[Middleware, Middleware]:
    """(observe, inject_faults) for an app whose `SimServer` is stored under `key`.

    observe records the request (with its body), adds the latency, records the answer's status
    and counts the response bytes; inject_faults answers with the first scripted fault matching
    the request, before auth and the handler.
    An "http" fault's default body is `error_body(status, message)`; "html" shows `html_page`.
    """

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        server: SimServer = request.app[key]
        call = server.record(
            request, _body(await request.read()) if request.can_read_body else None
        )
        if server.latency > 0:
            await asyncio.sleep(server.latency)
        response = await handler(request)
        call.status = response.status
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            server.bytes_sent += len(response.body)
        return response

    @web.middleware
    async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        fault = request.app[key].take_fault(request.method, request.path)
        if fault is None:
            return await handler(request)
        if fault.delay > 0:
            await asyncio.sleep(fault.delay)
        if fault.kind == "stall":
            return await handler(request)
        if fault.kind == "reset":
            _reset_connection(request)
            return web.Response(status=500)  # never sent: the connection is gone
        if fault.kind == "truncated":
            return await _truncated(fault, request, handler)
        if fault.kind == "cut":
            return await _cut(request, handler)
        return _fault_response(fault, error_body, html_page)

    return observe, inject_faults


def _body(raw: bytes) -> Any:
    """A request body as `Call.body` keeps it: its JSON, else its text; None when empty."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _fault_response(fault: Fault, error_body: ErrorBody, html_page: str) -> web.Response:
    """The answer of an "http", "problem" or "html" fault."""
    if fault.kind == "html":
        status = fault.status or 200
        body: str | bytes = fault.body if fault.body is not None else html_page
        content_type = "text/html"
    elif fault.kind == "problem":
        status = fault.status or 503
        body = fault.body if fault.body is not None else dumps(_problem(status))
        content_type = "application/problem+json"
    else:
        status = fault.status or 503
        if fault.body is None:
            message = "The service is temporarily unavailable (injected fault)."
            body = dumps(error_body(status, message))
        else:
            body = fault.body
        looks_json = body.lstrip()[:1] in ("{", "[", b"{", b"[")
        content_type = "application/json" if looks_json else "text/plain"
    raw = body.encode() if isinstance(body, str) else body
    return web.Response(status=status, body=raw, content_type=content_type, headers=fault.headers)


def _problem(status: int) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": phrase(status),
        "status": status,
        "detail": "The request could not be processed (injected fault).",
    }


async def _truncated(fault: Fault, request: web.Request, handler: Handler) -> web.Response:
    """A 200 JSON answer cut in the middle: the real answer's first half."""
    real = await handler(request)
    body = real.body if isinstance(real, web.Response) and isinstance(real.body, bytes) else b""
    if fault.body is not None:
        body = fault.body.encode() if isinstance(fault.body, str) else fault.body
    elif len(body) < 4:
        body = b'{"id":1,"status":9}'
    cut = body[: max(1, len(body) // 2)]
    return web.Response(
        status=fault.status or 200, body=cut, content_type="application/json",
        headers=fault.headers,
    )  # fmt: skip


async def _cut(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The real answer's headers (its full Content-Length), half its body, then the connection
    closed: the client sees a payload that never completes."""
    real = await handler(request)
    body = real.body if isinstance(real, web.Response) and isinstance(real.body, bytes) else b""
    response = web.StreamResponse(status=real.status, headers={"Content-Type": real.content_type})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()  # flushes what was written, then FIN: the rest never comes
    return response


def _reset_connection(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), so the client sees a reset."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
