"""The one HTTP layer every source speaks through.

One aiohttp `ClientSession` (with a global connection cap) is shared by all sources. A request
gets a timeout, and temporary failures — 429, 502, 503, 504, timeouts, refused or reset
connections — are retried with exponential backoff and full jitter, honouring `Retry-After`
(seconds or an HTTP date). Other 5xx answers fail the poll as temporary (the next poll tries
again); other 4xx answers are not retried. Whatever fails is mapped to one of
the three source errors, with a one-line message that names the request and the HTTP status but
never a header, a query string or a secret.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from yarl import URL

from watcher import __version__
from watcher.errors import SourceAuthError, SourceError, SourceProtocolError, SourceUnavailable
from watcher.redact import redact

RETRY_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = f"watcher/{__version__}"

Sleep = Callable[[float], Awaitable[None]]


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
        return rand() * min(self.cap, self.base * 2**attempt)


def make_session(*, limit: int = 100) -> aiohttp.ClientSession:
    """The process-wide session: pooled connections, capped at `limit` in total."""
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        raise_for_status=False,
    )


class HttpClient:
    """GETs JSON for a source; turns every failure into a typed `SourceError`.

    `sleep` and `rand` are injectable so tests run retries without waiting.
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
        self._sleep = sleep
        self._rand = rand
        self._wall = wall
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
    ) -> Any:
        """GET `url` and return its JSON body, retrying temporary failures per `policy`."""
        what = f"GET {url.path}"
        attempt = 0
        while True:
            try:
                return await self._get_once(url, what, source, headers, timeout, agent_id)
            except SourceUnavailable as err:
                retryable = err.http_status is None or err.http_status in RETRY_STATUSES
                if not retryable or attempt >= policy.retries:
                    raise
                if err.retry_after is not None:
                    if err.retry_after > policy.max_wait:
                        raise
                    delay = err.retry_after
                else:
                    delay = policy.backoff(attempt, self._rand)
                attempt += 1
                await self._sleep(delay)

    async def _get_once(
        self,
        url: URL,
        what: str,
        source: str,
        headers: Mapping[str, str],
        timeout: float,
        agent_id: str | None,
    ) -> Any:
        self.requests += 1
        try:
            async with self.session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                body = await resp.read()
                status, reason = resp.status, resp.reason or ""
                content_type = resp.content_type
                retry_after = _retry_after(resp.headers.get("Retry-After"), self._wall)
        except TimeoutError:
            raise SourceUnavailable(
                source, f"{what}: no answer within {timeout:g}s", agent_id=agent_id
            ) from None
        except aiohttp.ClientConnectorError as e:
            raise SourceUnavailable(
                source,
                f"{what}: cannot connect to {url.host}:{url.port}: {_os_reason(e)}",
                agent_id=agent_id,
            ) from None
        except aiohttp.ClientOSError as e:  # reset by peer, broken pipe
            raise SourceUnavailable(
                source, f"{what}: connection dropped ({e.strerror or _short(e)})", agent_id=agent_id
            ) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as e:
            raise SourceUnavailable(
                source, f"{what}: connection dropped ({_short(e)})", agent_id=agent_id
            ) from None
        except aiohttp.ClientError as e:  # resets, TLS errors, bad responses
            raise SourceUnavailable(
                source, f"{what}: {type(e).__name__}: {_short(e)}", agent_id=agent_id
            ) from None
        self.bytes += len(body)

        if 200 <= status < 300:
            return _parse_json(body, content_type, what, source, agent_id)
        line = f"{what}: HTTP {status} {reason}".rstrip() + _server_says(body)
        if status in (401, 403):
            raise SourceAuthError(source, line, agent_id=agent_id, http_status=status)
        if status in RETRY_STATUSES or status >= 500:
            raise SourceUnavailable(
                source, line, retry_after=retry_after, agent_id=agent_id, http_status=status
            )
        raise SourceProtocolError(source, line, agent_id=agent_id, http_status=status)


def _parse_json(
    body: bytes, content_type: str, what: str, source: str, agent_id: str | None
) -> Any:
    head = body.lstrip()[:1]
    if "html" in content_type or head == b"<":
        raise SourceProtocolError(
            source,
            f"{what}: expected JSON, got HTML ({content_type or 'no content type'})",
            agent_id=agent_id,
        )
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" at byte {e.pos}" if isinstance(e, json.JSONDecodeError) else ""
        raise SourceProtocolError(
            source,
            f"{what}: invalid JSON{where} of {len(body)} bytes (truncated or not JSON)",
            agent_id=agent_id,
        ) from None


def _server_says(body: bytes) -> str:
    """The platform's own explanation of an error, from the Cloud, RFC 7807 or 422 shapes."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ""
    text: Any = None
    if isinstance(data, dict):
        detail = data.get("detail")
        if isinstance(detail, list):  # FastAPI-style 422: [{loc, msg, type}]
            text = "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
                for d in detail
                if isinstance(d, dict)
            )
        else:
            text = data.get("message") or detail or data.get("title") or data.get("error")
    elif isinstance(data, str):
        text = data
    if not text or not isinstance(text, str):
        return ""
    return f": {_short(text)}"


def _retry_after(value: str | None, wall: Callable[[], float]) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - wall())


def _os_reason(e: aiohttp.ClientConnectorError) -> str:
    err = e.os_error
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, socket.gaierror):
        return f"host not found ({err.strerror})" if err.strerror else "host not found"
    return _short(err.strerror or err) if err else _short(e)


def _short(value: object, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["HttpClient", "RetryPolicy", "SourceError", "make_session"]
