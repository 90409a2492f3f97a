"""The one HTTP layer every source speaks through.

One aiohttp `ClientSession` (with a global connection cap) is shared by all sources. A request
gets a timeout, and temporary failures — 429, 502, 503, 504, timeouts, refused or reset
connections — are retried with exponential backoff and full jitter, honouring `Retry-After`
(seconds or an HTTP date). Other 5xx answers fail the poll as temporary (the next poll tries
again); other 4xx answers are not retried. Whatever fails is mapped to one of
the three source errors, with a one-line message that names the request and the HTTP status but
never a header, a query string or a secret. `download` streams a file to disk the same way,
with a size limit, hashing what it writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, TypeVar

import aiohttp
from yarl import URL

from watcher import __version__
from watcher.errors import (
    SourceProtocolError,
    SourceThrottled,
    SourceTooLarge,
    SourceUnavailable,
)
from watcher.sources.answers import (
    RETRY_STATUSES,
    parse_json,
    retry_after,
    status_error,
    transport_error,
)

MAX_RESPONSE_BYTES = 32 << 20
"""What a JSON answer may weigh, unless the source says otherwise (`max_response_bytes`)."""
USER_AGENT = f"watcher/{__version__}"
DOWNLOAD_CHUNK = 64 * 1024
ERROR_BODY_BYTES = 64 * 1024  # of an error answer to a download: enough for its message

Sleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")


class Unchanged:
    """Returned instead of JSON when a body is byte-identical to the last one committed."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one request is retried within one poll: `min(cap, base·2^n)` with full jitter.

    A `Retry-After` longer than `max_wait` is not waited out inside the poll: the error carries
    it, and the poller defers the source's next poll instead.
    """

    retries: int = 3
    base: float = 0.5
    cap: float = 20.0
    max_wait: float = 30.0

    def backoff(self, attempt: int, rand: Callable[[], float]) -> float:
        return rand() * min(self.cap, self.base * 2.0**attempt)


def make_session(*, limit: int = 100) -> aiohttp.ClientSession:
    """The process-wide session: pooled connections, capped at `limit` in total."""
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        raise_for_status=False,
    )


class Gate(Protocol):
    """What every attempt of a request passes through: the source's request budget and its
    concurrency limit (`watcher.sources.budget`). `enter` waits for both; `leave` tells how
    the attempt went; `throttled` hands on a 429."""

    async def enter(self) -> None: ...

    def leave(self, latency: float | None, *, dropped: bool) -> None: ...

    def throttled(self, retry_after: float | None) -> None: ...


class HttpClient:
    """GETs JSON (and streams downloads) for a source; turns every failure into a typed
    `SourceError`.

    `sleep` and `wall` are injectable so tests run retries and budget waits without waiting
    (a fake clock's `wall`, a `sleep` that moves it); `rand` makes the jitter repeatable.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.sleep = sleep
        self.wall = wall
        self._rand = rand
        self.requests = 0
        self.bytes = 0

    async def get_json(
        self,
        url: URL,
        *,
        source: str,
        headers: Mapping[str, str],
        timeout: float,
        policy: RetryPolicy,
        agent_id: str | None = None,
        unchanged: Callable[[bytes], bool] | None = None,
        max_bytes: int = MAX_RESPONSE_BYTES,
        gate: Gate | None = None,
    ) -> Any:
        """GET `url` and return its JSON body, retrying temporary failures per `policy`.

        With `unchanged`, a body for which it returns True is not parsed: `UNCHANGED` is
        returned instead (most listings of a healthy fleet are identical poll after poll).
        A body longer than `max_bytes` is a protocol error, found without reading it whole.
        """
        what = f"GET {url.path}"

        async def attempt() -> Any:
            return await self._get_once(
                url, what, source, headers, timeout, agent_id, unchanged, max_bytes
            )

        return await self._retrying(attempt, policy, gate)

    async def _retrying(
        self, attempt: Callable[[], Awaitable[_T]], policy: RetryPolicy, gate: Gate | None
    ) -> _T:
        """Run `attempt` until it succeeds, retrying temporary failures with backoff and
        Retry-After. Each attempt passes the gate. A 429 that cannot be waited out within
        the request is raised as `SourceThrottled`: the platform's budget, not an outage."""
        tries = 0
        while True:
            if gate is not None:
                await gate.enter()
            started = time.monotonic()
            latency: float | None = None
            dropped = throttled = False
            try:
                result = await attempt()
                latency = time.monotonic() - started
                return result
            except SourceUnavailable as err:
                throttled = err.http_status == 429
                dropped = throttled or err.timed_out
                if throttled and gate is not None:
                    gate.throttled(err.retry_after)
                delay = _retry_delay(err, tries, policy, self._rand)
                if delay is None:
                    if throttled:
                        raise SourceThrottled.of(err) from None
                    raise
                tries += 1
            finally:
                if gate is not None:
                    gate.leave(latency, dropped=dropped)
            if not (throttled and gate is not None):  # a gate waits out a 429 itself
                await self.sleep(delay)

    async def _get_once(
        self,
        url: URL,
        what: str,
        source: str,
        headers: Mapping[str, str],
        timeout: float,
        agent_id: str | None,
        unchanged: Callable[[bytes], bool] | None,
        max_bytes: int,
    ) -> Any:
        self.requests += 1
        body = b""
        try:
            async with self.session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                ok = 200 <= resp.status < 300
                body = await _read_bounded(
                    resp, max_bytes if ok else ERROR_BODY_BYTES, what, source, agent_id, ok
                )
                if not ok:
                    wait = retry_after(resp.headers.get("Retry-After"), self.wall)
                    raise status_error(
                        resp.status, resp.reason or "", body, wait, what, source, agent_id
                    )
                content_type = resp.content_type
        except TimeoutError:
            raise SourceUnavailable(
                source, f"{what}: no answer within {timeout:g}s", agent_id=agent_id, timed_out=True
            ) from None
        except aiohttp.ClientError as e:
            raise transport_error(e, url, what, source, agent_id) from None
        finally:
            self.bytes += len(body)
        if unchanged is not None and unchanged(body):
            return UNCHANGED
        return parse_json(body, content_type, what, source, agent_id)

    async def post_json(
        self,
        url: URL,
        body: Any,
        *,
        source: str,
        headers: Mapping[str, str],
        timeout: float,
        agent_id: str | None = None,
        gate: Gate | None = None,
    ) -> Any:
        """POST `body` as JSON once — never retried here: it asks the platform to *do*
        something (start a run), and a request whose answer was lost may have done it. A
        timeout or a dropped connection is a `SourceUnavailable` with `timed_out` or no HTTP
        status: the caller must take the outcome as unknown. Returns the answer's JSON (None
        for an empty body)."""
        what = f"POST {url.path}"
        if gate is not None:
            await gate.enter()
        started = time.monotonic()
        latency: float | None = None
        dropped = False
        self.requests += 1
        try:
            async with self.session.post(
                url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                ok = 200 <= resp.status < 300
                data = await _read_bounded(
                    resp, MAX_RESPONSE_BYTES if ok else ERROR_BODY_BYTES, what, source, agent_id, ok
                )
                self.bytes += len(data)
                if not ok:
                    wait = retry_after(resp.headers.get("Retry-After"), self.wall)
                    dropped = resp.status == 429
                    if dropped and gate is not None:
                        gate.throttled(wait)
                    error = status_error(
                        resp.status, resp.reason or "", data, wait, what, source, agent_id
                    )
                    if isinstance(error, SourceUnavailable) and dropped:
                        error = SourceThrottled.of(error)  # not done: safe to ask again
                    raise error
                latency = time.monotonic() - started
                content_type = resp.content_type
        except TimeoutError:
            dropped = True
            raise SourceUnavailable(
                source, f"{what}: no answer within {timeout:g}s", agent_id=agent_id, timed_out=True
            ) from None
        except aiohttp.ClientError as e:
            raise transport_error(e, url, what, source, agent_id) from None
        finally:
            if gate is not None:
                gate.leave(latency, dropped=dropped)
        if not data.strip():
            return None
        return parse_json(data, content_type, what, source, agent_id)

    async def download(
        self,
        url: URL,
        dest: BinaryIO,
        *,
        source: str,
        headers: Mapping[str, str],
        timeout: float,
        policy: RetryPolicy,
        agent_id: str | None = None,
        max_bytes: int | None = None,
        progress: Callable[[int], None] | None = None,
        gate: Gate | None = None,
    ) -> Downloaded:
        """Stream the body of GET `url` into `dest` (an open binary file, written from its
        start), retrying temporary failures per `policy`; each attempt starts the file over.

        `timeout` bounds connecting and each wait for data, not the whole transfer: a large file
        on a slow link is fine, a stalled one fails. A body longer than `max_bytes` raises
        `SourceTooLarge`, never retried. An error writing `dest` (a full disk) propagates as the
        `OSError` it is. `progress(n)` is told the bytes written so far.
        """
        what = f"GET {url.path}"
        all_headers = {"Accept": "*/*", **headers}

        async def attempt() -> Downloaded:
            dest.seek(0)
            dest.truncate()
            return await self._download_once(
                url, dest, what, source, all_headers, timeout, agent_id, max_bytes, progress
            )

        return await self._retrying(attempt, policy, gate)

    async def _download_once(
        self,
        url: URL,
        dest: BinaryIO,
        what: str,
        source: str,
        headers: Mapping[str, str],
        timeout: float,
        agent_id: str | None,
        max_bytes: int | None,
        progress: Callable[[int], None] | None,
    ) -> Downloaded:
        self.requests += 1
        limits = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        digest = hashlib.sha256()
        size = 0
        try:
            async with self.session.get(url, headers=headers, timeout=limits) as resp:
                if not 200 <= resp.status < 300:
                    body = await resp.content.read(ERROR_BODY_BYTES)
                    wait = retry_after(resp.headers.get("Retry-After"), self.wall)
                    raise status_error(
                        resp.status, resp.reason or "", body, wait, what, source, agent_id
                    )
                too_large = SourceTooLarge(
                    source, f"{what}: larger than the limit of {max_bytes} bytes", agent_id=agent_id
                )
                if max_bytes is not None and (resp.content_length or 0) > max_bytes:
                    raise too_large
                async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise too_large
                    digest.update(chunk)
                    dest.write(chunk)
                    if progress is not None:
                        progress(size)
        except TimeoutError:
            raise SourceUnavailable(
                source, f"{what}: no data within {timeout:g}s", agent_id=agent_id, timed_out=True
            ) from None
        except aiohttp.ClientError as e:
            raise transport_error(e, url, what, source, agent_id) from None
        finally:
            self.bytes += size
        dest.flush()
        return Downloaded(size, digest.hexdigest())


async def _read_bounded(
    resp: aiohttp.ClientResponse,
    limit: int,
    what: str,
    source: str,
    agent_id: str | None,
    strict: bool,
) -> bytes:
    """The body, read chunk by chunk up to `limit` bytes. Past it: a protocol error when
    `strict` (a JSON answer), else the body cut at the limit (an error answer, kept only for
    its message). A proxy streaming without end costs `limit` bytes of memory, not more."""
    too_large = SourceProtocolError(
        source,
        f"{what}: answer larger than {limit} bytes (max_response_bytes); not read",
        agent_id=agent_id,
    )
    if strict and (resp.content_length or 0) > limit:
        raise too_large
    body = bytearray()
    async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
        body += chunk
        if len(body) > limit:
            if strict:
                raise too_large
            return bytes(body[:limit])
    return bytes(body)


@dataclass(frozen=True, slots=True)
class Downloaded:
    """What `HttpClient.download` wrote: the byte count and the SHA-256 of the bytes."""

    size: int
    sha256: str


def _retry_delay(
    err: SourceUnavailable, attempt: int, policy: RetryPolicy, rand: Callable[[], float]
) -> float | None:
    """Seconds to wait before trying again after `err`, or None when it is not worth it."""
    retryable = err.http_status is None or err.http_status in RETRY_STATUSES
    if not retryable or attempt >= policy.retries:
        return None
    if err.retry_after is not None:
        return err.retry_after if err.retry_after <= policy.max_wait else None
    return policy.backoff(attempt, rand)


__all__ = ["Downloaded", "HttpClient", "RetryPolicy", "make_session"]
