"""A simulated world's schedule: actions due at given times, applied in time order.

The ACC and automation-runs worlds put every planned transition here; `run_due(now)` applies
all that are due by `now`, each at its own due time, so a jump of the clock replays them with
realistic timestamps. An action scheduled while another runs is applied in the same call if it
is already due.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Callable
from datetime import datetime
from random import Random

Action = Callable[[datetime], None]


class Timeline:
    """Callbacks keyed by due time; ties keep the order they were scheduled in."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, Action]] = []
        self._seq = itertools.count()

    def at(self, when: datetime, action: Action) -> None:
        """Call `action(when)` once the clock reaches `when`."""
        heapq.heappush(self._heap, (when, next(self._seq), action))

    def run_due(self, now: datetime) -> int:
        """Apply every action due by `now`, oldest first; return how many ran."""
        done = 0
        while self._heap and self._heap[0][0] <= now:
            when, _, action = heapq.heappop(self._heap)
            action(when)
            done += 1
        return done

    def __len__(self) -> int:
        return len(self._heap)


def random_uuid(rng: Random) -> str:
    """A version-4 UUID drawn from `rng`, so a seeded world always makes the same ids."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
