"""What a platform's answer means: a typed error for a failed request (in one line, with the
platform's own explanation), JSON for a good one. Shared by every request the HTTP layer makes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from watcher.errors import SourceAuthError, SourceError, SourceProtocolError, SourceUnavailable
from watcher.redact import redact

RETRY_STATUSES = frozenset({429, 502, 503, 504})


def transport_error(
    e: aiohttp.ClientError, url: URL, what: str, source: str, agent_id: str | None
) -> SourceUnavailable:
    """A connection-level failure as the temporary error it is, in one line."""
    if isinstance(e, aiohttp.ClientConnectorError):
        text = f"cannot connect to {url.host}:{url.port}: {_os_reason(e)}"
    elif isinstance(e, aiohttp.ClientOSError):  # reset by peer, broken pipe
        text = f"connection dropped ({e.strerror or _short(e)})"
    elif isinstance(e, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        text = f"connection dropped ({_short(e)})"
    else:  # TLS errors, bad responses
        text = f"{type(e).__name__}: {_short(e)}"
    return SourceUnavailable(source, f"{what}: {text}", agent_id=agent_id)


def status_error(
    status: int,
    reason: str,
    body: bytes,
    retry_after: float | None,
    what: str,
    source: str,
    agent_id: str | None,
) -> SourceError:
    """A non-2xx answer as a typed error: auth (401/403), temporary (429, 5xx), or protocol."""
    line = f"{what}: HTTP {status} {reason}".rstrip() + _server_says(body)
    if status in (401, 403):
        return SourceAuthError(source, line, agent_id=agent_id, http_status=status)
    if status in RETRY_STATUSES or status >= 500:
        return SourceUnavailable(
            source, line, retry_after=retry_after, agent_id=agent_id, http_status=status
        )
    return SourceProtocolError(source, line, agent_id=agent_id, http_status=status)


def parse_json(body: bytes, content_type: str, what: str, source: str, agent_id: str | None) -> Any:
    head = body.lstrip()[:1]
    if "html" in content_type or head == b"<":
        raise SourceProtocolError(
            source,
            f"{what}: expected JSON, got HTML ({content_type or 'no content type'})",
            agent_id=agent_id,
        )
    try:
        return _loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" at byte {e.pos}" if isinstance(e, json.JSONDecodeError) else ""
        raise SourceProtocolError(
            source,
            f"{what}: invalid JSON{where} of {len(body)} bytes (truncated or not JSON)",
            agent_id=agent_id,
        ) from None
    except (ValueError, RecursionError):  # an integer of thousands of digits; deep nesting
        raise SourceProtocolError(
            source,
            f"{what}: JSON of {len(body)} bytes beyond what watcher reads "
            "(a number too long or nesting too deep)",
            agent_id=agent_id,
        ) from None


def _loads(body: bytes) -> Any:
    """Decode JSON with orjson (a listing decodes several times faster), or with the standard
    library for what only it reads (UTF-16, lone surrogates, NaN) and to locate an error."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _valid_text(json.loads(body))


def _valid_text(value: Any) -> Any:
    """`value` with every string made encodable: a lone surrogate escape ("\\ud800") is valid
    JSON but no UTF-8, and would make every event that quotes it impossible to write."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode(errors="replace").decode()
        return value
    if isinstance(value, list):
        return [_valid_text(v) for v in value]
    if isinstance(value, dict):
        return {_valid_text(k): _valid_text(v) for k, v in value.items()}
    return value


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
            text = "; ".join(_validation_error(d) for d in detail if isinstance(d, dict))
        else:
            text = data.get("message") or detail or data.get("title") or data.get("error")
    elif isinstance(data, str):
        text = data
    if not text or not isinstance(text, str):
        return ""
    return f": {_short(text)}"


def _validation_error(item: dict[str, Any]) -> str:
    """One entry of a FastAPI 422 `detail` list: "query.limit: Input should be …"."""
    loc = item.get("loc")
    where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
    msg = item.get("msg")
    what = msg if isinstance(msg, str) and msg else str(item.get("type") or "invalid")
    return f"{where}: {what}" if where else what


def retry_after(value: str | None, wall: Callable[[], float]) -> float | None:
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
