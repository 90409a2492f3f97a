"""What every alert channel does alike, whatever it speaks: apprise (notify.py) or watcher's
own structured webhook (webhook.py).

A channel is one URL of one subscription and its own outbox target, so a delivery that
succeeded on one channel is never re-sent when another one fails, and a slow or dead channel
delays only itself. Retry policy stays with the dispatcher (backoff until the subscription's
`max_age`, then `notification.failed`); a channel only says whether a send worked, and whether
trying again could help (`DeliveryError.retryable`).

Noise control, in the manner of Alertmanager: when more than `group_threshold` events for a
channel arrive within `group_wait` — fifty failures in one poll, or the catch-up after a
downtime — they go out as a digest that lists them, one line each, instead of one message
each; a digest longer than `DIGEST_LINES` lines is sent in parts ("part 1/2", "part 2/2"),
each marked delivered as it goes out.
"""

from __future__ import annotations

import hashlib
import re
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import unquote

from watcher import redact
from watcher.config import SubscriptionConfig
from watcher.config.subscriptions import is_webhook
from watcher.events import Event, EventType, follow_up
from watcher.messages import Display, Message, Templates, render_digests
from watcher.runs import Outcome
from watcher.sinks.base import DeliveryError, Done, Sink

SEND_TIMEOUT = 30.0
"""Seconds one send may take before it counts as failed (and is retried)."""


class Subscription:
    """Which events a subscription wants — its `on`, `sources` and `agents` filters — and how
    its alerts read (templates, display time zone, host). Pure."""

    def __init__(self, config: SubscriptionConfig, display: Display | None = None) -> None:
        self.config = config
        self.name = config.name
        self.display = display or Display()
        self.templates = Templates(config.title, config.body, self.display)
        self._on = frozenset(config.on)
        self._sources = frozenset(config.sources)
        self._agents = [p.lower() for p in config.agents]

    def same_as(self, other: Subscription) -> bool:
        """Configured alike and shown alike: a reload keeps the running channel."""
        return (self.config, self.display) == (other.config, other.display)

    def wants(self, event: Event) -> bool:
        if event.type.startswith("notification."):
            return False  # watcher's own bookkeeping never alerts (and never loops)
        if self._sources and event.source not in self._sources:
            return False
        if self._agents and event.agent_id is not None and not self._agent_matches(event):
            return False
        if event.type == EventType.RUN_FINISHED and event.outcome is not None:
            if event.outcome.value in self._on:
                return True
            return "recovered" in self._on and is_recovery(event)
        return event.type in self._on

    def _agent_matches(self, event: Event) -> bool:
        names = [event.agent_id or "", (event.agent_name or "").lower()]
        return any(fnmatchcase(n, p) for p in self._agents for n in names if n)


def is_recovery(event: Event) -> bool:
    """A success that follows a failure of the same agent."""
    return event.outcome is Outcome.SUCCESS and event.get("agent_previous_outcome") == "failure"


class AlertChannel(Sink):
    """One URL of one subscription, as a sink of the dispatcher: filters, groups bursts into
    digests, records `notification.sent` / `notification.failed`. A subclass sends."""

    masked: str
    """The URL as it may be shown (logs, events, `watcher status`): no token in it."""

    def __init__(
        self,
        subscription: Subscription,
        url: str,
        *,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.subscription = subscription
        self.name = f"notify:{subscription.name}:{hashlib.sha256(url.encode()).hexdigest()[:12]}"
        self.max_age = subscription.config.max_age
        self.noise = subscription.config
        self._clock = clock
        self._monotonic = monotonic
        self._recent: deque[float] = deque()  # when recent events went out (for grouping)

    def accepts(self, event: Event) -> bool:
        return self.subscription.wants(event)

    async def deliver(self, events: Sequence[Event], done: Done) -> None:
        cfg = self.subscription.config
        now = self._monotonic()
        while self._recent and now - self._recent[0] > cfg.group_wait:
            self._recent.popleft()
        burst = len(events) > 1 and len(self._recent) + len(events) > cfg.group_threshold
        burst = burst or (len(events) > 1 and all(e.get("held") for e in events))  # released
        if burst:  # each part marked the moment it went out: a crash repeats one part at most
            sub = self.subscription
            parts = render_digests(events, sub.name, sub.display)
            for n, (part, message) in enumerate(parts, 1):
                sending = self.send_digest(part, message, n, len(parts))
                await self._attempt(sending, part, done, digest=True, part=n, parts=len(parts))
            return
        for event in events:  # each marked the moment it went out: a crash repeats one at most
            message = self.subscription.templates.render(event, self.subscription.name)
            await self._attempt(self.send_event(event, message), [event], done, digest=False)

    async def _attempt(
        self, sending: Awaitable[None], events: Sequence[Event], done: Done, **data: object
    ) -> None:
        """Await one send and mark its events: sent; or, when trying again cannot help (a
        webhook answering 404), given up at once with `notification.failed` while the rest of
        the batch goes on. A failure that may pass is raised, for the dispatcher to retry."""
        try:
            await sending
        except DeliveryError as err:
            if err.retryable:
                raise
            error = redact.redact(str(err))
            done([e.id for e in events], await self.abandoned(events, error))
            return
        done([e.id for e in events], self._sent(events, **data))

    @abstractmethod
    async def send_event(self, event: Event, message: Message) -> None:
        """Send the alert about one event; raise `DeliveryError` when it did not go out."""

    @abstractmethod
    async def send_digest(
        self, events: Sequence[Event], message: Message, part: int, parts: int
    ) -> None:
        """Send part `part` of `parts` of a digest listing `events`; raise `DeliveryError`."""

    @abstractmethod
    async def send_message(self, message: Message) -> None:
        """Send a message about no event (`watcher notify-test`); raise `DeliveryError`."""

    async def abandoned(self, events: Sequence[Event], error: str) -> list[Event]:
        """Delivery was given up: say so in the event log, once per event."""
        return [self._about(e, EventType.NOTIFICATION_FAILED, error=error) for e in events]

    async def send_test(self) -> tuple[bool, str]:
        """A clearly marked test message (`watcher notify-test`): (worked, why not)."""
        message = Message(
            title="[watcher test] notifications work",
            body=f"This is a test from watcher for the subscription "
            f"'{self.subscription.name}'. No run failed.",
        )
        try:
            await self.send_message(message)
        except DeliveryError as err:
            return False, str(err)
        return True, ""

    def _sent(self, events: Sequence[Event], **data: object) -> list[Event]:
        now = self._monotonic()
        self._recent.extend(now for _ in events)
        return [self._about(e, EventType.NOTIFICATION_SENT, **data) for e in events]

    def _about(self, event: Event, type: EventType, **data: Any) -> Event:
        return follow_up(
            event,
            type,
            by=self.name,
            ts=self._clock(),
            subscription=self.subscription.name,
            channel=self.masked,
            **data,
        )


def channel_class(url: str) -> type[AlertChannel]:
    """watcher's structured webhook for a webhook+ URL, apprise for any other: each module
    imported only when a URL needs it."""
    if is_webhook(url):
        from watcher.sinks.webhook import WebhookChannel

        return WebhookChannel
    from watcher.sinks.notify import Channel

    return Channel


def register_secrets(url: str, masked: str) -> None:
    """Mask the parts of a channel URL that its shown form hides (tokens, passwords, query
    values)."""
    shown = set(re.split(r"[/:@?&=#]", unquote(masked)))
    hidden = (p for p in re.split(r"[/:@?&=#]", unquote(url)) if len(p) >= 6 and p not in shown)
    redact.register(*hidden)
