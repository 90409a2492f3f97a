"""The apprise channel: one sink per (subscription, apprise URL).

Each URL is sent through its own apprise object, so 100+ services need no code of ours; apprise
never raises, so its result decides success (and every failure is retried: apprise does not say
which ones are permanent). What all channels do alike — filters, digests, notification events —
is `AlertChannel`'s (alerting.py).
Alerts released together from a hold (a mute window, a flapping agent: `watcher.noise`) go out
as one digest; silences and the other rules are applied before a channel sees its events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import apprise

from watcher import redact
from watcher.events import Event, EventType
from watcher.messages import Message
from watcher.runs import Outcome
from watcher.sinks.alerting import (
    SEND_TIMEOUT,
    AlertChannel,
    Subscription,
    is_recovery,
    register_secrets,
)
from watcher.sinks.base import DeliveryError

_NOTIFY_TYPES = {
    Outcome.FAILURE: apprise.NotifyType.FAILURE,
    Outcome.STOPPED: apprise.NotifyType.WARNING,
    Outcome.SUCCESS: apprise.NotifyType.SUCCESS,
}
_WARNING_TYPES = {EventType.RUN_WARNING, EventType.RUN_UNKNOWN_STATUS, EventType.SOURCE_FAILED}


class Channel(AlertChannel):
    """One apprise URL of one subscription."""

    def __init__(
        self,
        subscription: Subscription,
        url: str,
        *,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(subscription, url, clock=clock, monotonic=monotonic)
        self._apprise = apprise.Apprise()
        if not self._apprise.add(url):
            raise ValueError(f"subscription {subscription.name}: not a usable apprise URL")
        # apprise is untyped; url(privacy=True) is its masked form of the URL, a str
        self.masked: str = self._apprise[0].url(privacy=True)  # type: ignore[no-untyped-call]
        register_secrets(url, self.masked)

    async def send_event(self, event: Event, message: Message) -> None:
        await self._send(message, _notify_type(event))

    async def send_digest(
        self, events: Sequence[Event], message: Message, part: int, parts: int
    ) -> None:
        await self._send(message, _worst(events))

    async def send_message(self, message: Message) -> None:
        await self._send(message, apprise.NotifyType.INFO)

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


def _notify_type(event: Event) -> apprise.NotifyType:
    if event.type == EventType.SOURCE_RECOVERED or is_recovery(event):
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
