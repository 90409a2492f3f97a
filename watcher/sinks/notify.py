"""Alert channels: one sink per (subscription, apprise URL).

Each channel is its own outbox target, so a delivery that succeeded on one channel is never
re-sent when another one fails, and a slow or dead channel delays only itself. Each URL is sent
through its own apprise object; apprise never raises, so its result decides success, and retry
policy stays with the dispatcher (backoff until the subscription's `max_age`, then
`notification.failed`).

Noise control, in the manner of Alertmanager: when more than `group_threshold` events for a
channel arrive within `group_wait` — fifty failures in one poll, or the catch-up after a
downtime — they go out as a digest that lists them, one line each, instead of one message
each; a digest longer than `DIGEST_LINES` lines is sent in parts ("part 1/2", "part 2/2").
Alerts released together from a hold (a mute window, a flapping agent: `watcher.noise`) go out
as one digest too. Silences and the other rules are applied before a channel sees its events.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from fnmatch import fnmatchcase
from urllib.parse import unquote

import apprise
import structlog

from watcher import redact
from watcher.config import SubscriptionConfig
from watcher.messages import Message, Templates, render_digests
from watcher.models import Event, Outcome, follow_up
from watcher.sinks.base import DeliveryError, Done, Sink

log = structlog.get_logger("watcher.notify")

SEND_TIMEOUT = 30.0

_NOTIFY_TYPES = {
    Outcome.FAILURE: apprise.NotifyType.FAILURE,
    Outcome.STOPPED: apprise.NotifyType.WARNING,
    Outcome.SUCCESS: apprise.NotifyType.SUCCESS,
}
_WARNING_TYPES = {"run.warning", "run.unknown_status", "source.failed"}


class Subscription:
    """Which events a subscription wants: its `on`, `sources` and `agents` filters. Pure."""

    def __init__(self, config: SubscriptionConfig) -> None:
        self.config = config
        self.name = config.name
        self.templates = Templates(config.title, config.body)
        self._on = frozenset(config.on)
        self._sources = frozenset(config.sources)
        self._agents = [p.lower() for p in config.agents]

    def wants(self, event: Event) -> bool:
        if event.type.startswith("notification."):
            return False  # watcher's own bookkeeping never alerts (and never loops)
        if self._sources and event.source not in self._sources:
            return False
        if self._agents and event.agent_id is not None and not self._agent_matches(event):
            return False
        if event.type == "run.finished" and event.outcome is not None:
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


class Channel(Sink):
    """One apprise URL of one subscription, as a sink of the dispatcher."""

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
        self._apprise = apprise.Apprise()
        if not self._apprise.add(url):
            raise ValueError(f"subscription {subscription.name}: not a usable apprise URL")
        self.masked = self._apprise[0].url(privacy=True)
        self.max_age = subscription.config.max_age
        self.noise = subscription.config
        _register_secrets(url, self.masked)
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
            parts = render_digests(events, self.subscription.name)
            for n, (part, message) in enumerate(parts, 1):
                await self._send(message, _worst(part))
                done([e.id for e in part], self._sent(part, digest=True, part=n, parts=len(parts)))
            return
        for event in events:  # each marked the moment it went out: a crash repeats one at most
            message = self.subscription.templates.render(event, self.subscription.name)
            await self._send(message, _notify_type(event))
            done([event.id], self._sent([event], digest=False))

    async def abandoned(self, events: Sequence[Event], error: str) -> list[Event]:
        """Delivery was given up: say so in the event log, once per event."""
        return [self._about(e, "notification.failed", error=error) for e in events]

    async def send_test(self) -> tuple[bool, str]:
        """A clearly marked test message (`watcher notify-test`): (worked, why not)."""
        message = Message(
            title="[watcher test] notifications work",
            body=f"This is a test from watcher for the subscription "
            f"'{self.subscription.name}'. No run failed.",
        )
        try:
            await self._send(message, apprise.NotifyType.INFO)
        except DeliveryError as err:
            return False, str(err)
        return True, ""

    async def _send(self, message: Message, notify_type: apprise.NotifyType) -> None:
        result = await self._apprise.async_notify(
            body=message.body or message.title,
            title=message.title,
            notify_type=notify_type,
            body_format=self.subscription.config.format,
            timeout=SEND_TIMEOUT,
        )
        if not result:
            raise DeliveryError(f"{self.masked}: {_reason(result)}")

    def _sent(self, events: Sequence[Event], **data: object) -> list[Event]:
        now = self._monotonic()
        self._recent.extend(now for _ in events)
        return [self._about(e, "notification.sent", **data) for e in events]

    def _about(self, event: Event, type: str, **data: object) -> Event:
        return follow_up(
            event,
            type,
            by=self.name,
            ts=self._clock(),
            subscription=self.subscription.name,
            channel=self.masked,
            **data,
        )


def _notify_type(event: Event) -> apprise.NotifyType:
    if event.type == "source.recovered" or is_recovery(event):
        return apprise.NotifyType.SUCCESS
    if event.outcome is not None:
        return _NOTIFY_TYPES.get(event.outcome, apprise.NotifyType.INFO)
    return apprise.NotifyType.WARNING if event.type in _WARNING_TYPES else apprise.NotifyType.INFO


def _worst(events: Sequence[Event]) -> apprise.NotifyType:
    types = {_notify_type(e) for e in events}
    for candidate in (apprise.NotifyType.FAILURE, apprise.NotifyType.WARNING,
                      apprise.NotifyType.SUCCESS):  # fmt: skip
        if candidate in types:
            return candidate
    return apprise.NotifyType.INFO


def _reason(result: object) -> str:
    """Why apprise could not deliver, from its own log of the call (secrets masked)."""
    reason = "not delivered"
    try:
        for entry in result.logs():  # type: ignore[attr-defined]
            level = entry.level
            if isinstance(level, str):
                level = logging.getLevelName(level.upper())
            if isinstance(level, int) and level >= logging.WARNING:
                reason = str(entry.message)
    except Exception:  # an apprise without per-call logs
        pass
    return redact.redact(" ".join(reason.split()))[:300]


def _register_secrets(url: str, masked: str) -> None:
    """Mask the parts of a channel URL that apprise's privacy view hides (tokens, passwords)."""
    shown = set(re.split(r"[/:@?&=#]", unquote(masked)))
    hidden = (p for p in re.split(r"[/:@?&=#]", unquote(url)) if len(p) >= 6 and p not in shown)
    redact.register(*hidden)
