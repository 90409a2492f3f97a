"""The structured webhook: `webhook+https://…` receives the event itself, as JSON, signed.

apprise's json:// posts a title and a message, which suits a chat; a program that acts on
alerts wants the event. The body is the event as in the events file, plus `title` and
`message` (the rendered alert) and `subscription`; the platform's own message, which the events
file calls `message`, is `platform_message` here. A digest posts
`{"type": "digest", "subscription", "part", "parts", "title", "message", "events": [...]}`.

Each POST says what it is in its headers, in GitHub's manner: `X-Watcher-Event` (the event type,
"digest" or "test"), `X-Watcher-Delivery` (the same for a retry of the same events on the same
channel, so a receiver can drop a repeat) and, when the subscription has a `secret_file`,
`X-Watcher-Signature: sha256=<hex HMAC-SHA256 of the raw body>`.

2xx is delivered. 429, 5xx, a timeout or a failed connection may pass: the dispatcher retries
with growing pauses until `max_age`. Any other answer (4xx, a redirect) cannot: the events are
given up at once (`notification.failed`). Redirects are not followed: a signed body goes where
it was configured to, nowhere else. The URL may hold a token: it is shown as scheme://host/path
and its other parts are masked wherever text leaves the process.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from watcher import __version__, redact
from watcher.codec import dumps_compact
from watcher.config.subscriptions import WEBHOOK_PREFIX
from watcher.events import Event
from watcher.messages import Message
from watcher.sinks.alerting import SEND_TIMEOUT, AlertChannel, Subscription, register_secrets
from watcher.sinks.base import DeliveryError

USER_AGENT = f"watcher/{__version__}"
SIGNATURE_HEADER = "X-Watcher-Signature"


class WebhookChannel(AlertChannel):
    """One `webhook+http(s)://` URL of one subscription."""

    def __init__(
        self,
        subscription: Subscription,
        url: str,
        *,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        timeout: float = SEND_TIMEOUT,
    ) -> None:
        super().__init__(subscription, url, clock=clock, monotonic=monotonic)
        self._url = url.strip()[len(WEBHOOK_PREFIX) :]
        self.masked = WEBHOOK_PREFIX + shown(self._url)
        register_secrets(url, self.masked)
        if self._url != shown(self._url):  # the whole URL too, wherever a library quotes it
            redact.register(self._url)
        self._secret = subscription.config.secret()
        self._timeout = timeout

    async def send_event(self, event: Event, message: Message) -> None:
        payload = event_payload(event, message, self.subscription.name)
        await self._post(event.type, self.delivery_id([event.id]), payload)

    async def send_digest(
        self, events: Sequence[Event], message: Message, part: int, parts: int
    ) -> None:
        payload = {
            "type": "digest",
            "subscription": self.subscription.name,
            "part": part,
            "parts": parts,
            "title": message.title,
            "message": message.body,
            "events": [e.to_dict() for e in events],
        }
        await self._post("digest", self.delivery_id(e.id for e in events), payload)

    async def send_message(self, message: Message) -> None:
        payload = {"type": "test", "subscription": self.subscription.name,
                   "title": message.title, "message": message.body}  # fmt: skip
        await self._post("test", str(uuid.uuid4()), payload)

    def delivery_id(self, event_ids: Iterable[str]) -> str:
        """The same events on the same channel: the same id, on every retry."""
        text = "\n".join([self.name, *sorted(event_ids)])
        return str(uuid.UUID(hashlib.sha256(text.encode()).hexdigest()[:32]))

    async def _post(self, kind: str, delivery: str, payload: dict[str, Any]) -> None:
        body = dumps_compact(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Watcher-Event": kind,
            "X-Watcher-Delivery": delivery,
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:  # a session per send: nothing to close when a reload replaces the channel
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self._url, data=body, headers=headers, allow_redirects=False) as got,
            ):
                status, reason = got.status, got.reason or ""
        except TimeoutError:
            raise DeliveryError(f"{self.masked}: no answer within {self._timeout:g} s") from None
        except aiohttp.ClientError as err:
            why = " ".join(str(err).split()) or type(err).__name__
            raise DeliveryError(f"{self.masked}: {why}"[:300]) from None
        if 200 <= status < 300:
            return
        retryable = status == 429 or status >= 500
        later = "" if retryable else " (not retried)"
        raise DeliveryError(f"{self.masked}: HTTP {status} {reason}{later}", retryable=retryable)


def event_payload(event: Event, message: Message, subscription: str) -> dict[str, Any]:
    """The body posted for one event: its events-file fields, the rendered alert, and the
    subscription."""
    data = event.to_dict()
    data["platform_message"] = data.pop("message")
    return {**data, "title": message.title, "message": message.body,
            "subscription": subscription}  # fmt: skip


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of body>`, as GitHub signs its webhooks."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def shown(url: str) -> str:
    """scheme://host[:port]/path: the URL without credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
