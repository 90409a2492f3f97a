"""What a sink is: a consumer of events that the dispatcher feeds from the outbox."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from watcher.models import Event


class DeliveryError(Exception):
    """A sink could not deliver. `retryable=False` means trying again cannot help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Sink(ABC):
    #: The outbox target name; unique among sinks.
    name: str

    def accepts(self, event: Event) -> bool:
        """Should this sink receive `event`? Decided once, when the event is recorded."""
        return True

    @abstractmethod
    async def deliver(self, events: Sequence[Event]) -> None:
        """Deliver a batch, all or nothing; raise `DeliveryError` when it failed."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the sink holds."""
