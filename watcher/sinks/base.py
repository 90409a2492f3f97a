"""What a sink is: a consumer of events that the dispatcher feeds from the outbox."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from watcher.events import Event

if TYPE_CHECKING:
    from watcher.config import SubscriptionConfig


class DeliveryError(Exception):
    """A sink could not deliver. `retryable=False` means trying again cannot help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Done(Protocol):
    """`done(event_ids, produced)`: these events are delivered — their outbox rows go — and
    `produced` (what the sink has to say about them: notification.sent, output.fetched) is
    recorded, in the same transaction."""

    def __call__(self, event_ids: Sequence[str], produced: Sequence[Event] = ()) -> None: ...


class Sink(ABC):
    #: The outbox target name; unique among sinks.
    name: str
    #: Seconds a failing delivery is retried before it is abandoned (None: the dispatcher's).
    max_age: float | None = None
    #: The subscription whose noise control (silences, mute windows, streaks, flapping) gates
    #: what this sink is handed (`watcher.noise.gate`): alert channels. None: never gated.
    noise: SubscriptionConfig | None = None

    def accepts(self, event: Event) -> bool:
        """Should this sink receive `event`? Decided once, when the event is recorded."""
        return True

    @abstractmethod
    async def deliver(self, events: Sequence[Event], done: Done) -> None:
        """Deliver a batch; raise `DeliveryError` when (some of) it failed.

        A sink calls `done(event_ids, produced)` as each piece succeeds: those rows leave the
        outbox at once — with the events the sink produced about them, in one transaction —
        so a crash in the middle of a batch repeats only the one delivery in flight.
        Whatever is not marked when `deliver` returns is marked then; whatever is not marked
        when it raises is retried.
        """

    async def abandoned(self, events: Sequence[Event], error: str) -> list[Event]:
        """Delivery of `events` was given up (too old, or a permanent error): the events
        that say so, to be recorded (none by default)."""
        return []

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the sink holds."""
