"""What a sink is: a consumer of events that the dispatcher feeds from the outbox."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from watcher.models import Event


class DeliveryError(Exception):
    """A sink could not deliver. `retryable=False` means trying again cannot help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


Done = Callable[[Sequence[str]], None]


class Sink(ABC):
    #: The outbox target name; unique among sinks.
    name: str
    #: Seconds a failing delivery is retried before it is abandoned (None: the dispatcher's).
    max_age: float | None = None

    def accepts(self, event: Event) -> bool:
        """Should this sink receive `event`? Decided once, when the event is recorded."""
        return True

    @abstractmethod
    async def deliver(self, events: Sequence[Event], done: Done) -> None:
        """Deliver a batch; raise `DeliveryError` when (some of) it failed.

        A sink that delivers a batch piece by piece calls `done(event_ids)` as each piece
        succeeds: those rows leave the outbox at once, so a crash in the middle of a batch
        repeats only the one delivery in flight. Whatever is not marked when `deliver`
        returns is marked then; whatever is not marked when it raises is retried.
        """

    async def abandoned(self, events: Sequence[Event], error: str) -> None:  # noqa: B027
        """Delivery of `events` was given up (too old, or a permanent error). Optional hook."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the sink holds."""
