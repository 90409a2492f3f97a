"""A per-credential request limit, as a platform's API gateway enforces it.

Sequentum Cloud allows 100 requests per minute per API key (the vendor's client and docs);
beyond that it answers 429 with Retry-After. The limiter is a sliding window, the strictest
reading of "N per minute": within any `window` seconds at most `limit` requests of one
credential are answered. A refused request does not take a slot, so a client that waits the
Retry-After it was given is answered. Time is the world's injected clock, so tests move it by
hand instead of sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware


class SlidingWindow:
    """At most `limit` admitted requests per key in any `window` seconds."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        if limit < 1:
            raise ValueError("a rate limit admits at least one request (None: no limit)")
        if window <= 0:
            raise ValueError("a rate window lasts more than 0 seconds")
        self.limit = limit
        self.window = timedelta(seconds=window)
        self._admitted: dict[str, deque[datetime]] = {}

    def admit(self, key: str, now: datetime) -> int | None:
        """Count a request of `key` at `now` and return None, or refuse it (it is not counted)
        and return the whole seconds until a slot frees, at least 1."""
        times = self._admitted.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.limit:
            times.append(now)
            return None
        return max(1, math.ceil((times[0] + self.window - now).total_seconds()))


def throttle_middleware(
    key: web.AppKey[Any],
    credential: Callable[[web.Request], str],
    error_body: Callable[[int, str], Any],
    dumps: Callable[[Any], str],
) -> Middleware:
    """A middleware, placed after auth, that answers 429 with Retry-After and the platform's
    error body when the world (stored under `key`) refuses the request's `credential`."""

    @web.middleware
    async def throttle(request: web.Request, handler: Handler) -> web.StreamResponse:
        wait = request.app[key].admit(credential(request))
        if wait is None:
            return await handler(request)
        message = f"Rate limit exceeded. Try again in {wait} seconds."
        return web.Response(
            status=429,
            text=dumps(error_body(429, message)),
            content_type="application/json",
            headers={"Retry-After": str(wait)},
        )

    return throttle
