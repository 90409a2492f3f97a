"""A dead man's switch for watcher itself: an outside service (healthchecks.io, Cronitor) hears
from watcher while all is well, and raises the alarm when it stops hearing — when watcher, its
host or its network is gone, which no alert of watcher's own could ever say.

`[watcher] heartbeat_url` gets a GET after each cycle in which every source polled
successfully, at most once a minute; `<url>/fail` (or `heartbeat_fail_url`) a GET when a
source is reported failed (`source.failed`, once per outage) — the healthchecks.io
convention. A ping that fails is logged, never fatal: the switch is there for when watcher
cannot speak, so it must never stop watcher from speaking.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog

from watcher import redact

log = structlog.get_logger("watcher.heartbeat")

EVERY = 60.0
"""Seconds, at least, between two pings of a healthy watcher."""
TIMEOUT = 10.0


class Heartbeat:
    def __init__(
        self,
        url: str,
        fail_url: str | None,
        *,
        session: aiohttp.ClientSession,
        clock: Callable[[], datetime],
    ) -> None:
        self.url = url
        self.fail_url = fail_url or _fail_url(url)
        self._session = session
        self._clock = clock
        self._last: float | None = None
        self.sent = 0
        redact.register(url, fail_url)

    async def healthy(self) -> None:
        """Every source polled successfully: ping, unless the last ping is under a minute old."""
        now = self._clock().timestamp()
        if self._last is not None and now - self._last < EVERY:
            return
        if await self._ping(self.url):
            self._last = now

    async def failing(self) -> None:
        """A source failed: say so at once (and ping again as soon as all is well)."""
        await self._ping(self.fail_url)
        self._last = None

    async def _ping(self, url: str) -> bool:
        try:
            async with self._session.get(
                url, timeout=aiohttp.ClientTimeout(total=TIMEOUT)
            ) as response:
                await response.read()
                ok = response.status < 400
                if not ok:
                    log.warning("heartbeat not taken", status=response.status)
        except (aiohttp.ClientError, TimeoutError) as err:
            log.warning("heartbeat not sent", error=redact.redact(f"{type(err).__name__}: {err}"))
            return False
        self.sent += 1
        return ok


def _fail_url(url: str) -> str:
    """`url` + "/fail" on its path, its query kept (healthchecks.io's `?create=1`)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))
