"""How many requests a source may send, and how many at once.

`RequestBudget` — every request of a source (listings, run lists, details, steps, schedules,
downloads) takes a slot first. At most `per_minute` slots are taken in any 60-second window:
a token bucket whose tokens come back 60 s after they were spent, which is the strictest
reading of a platform's "100 requests per minute per key" (a classic bucket with a burst
allowance could spend twice its rate within one window). A 429 means the platform's budget is
smaller than ours — another client shares the key — so the rate in use is lowered (×0.75) and
nothing is sent before its Retry-After; every minute without a 429 gives one request per
minute back, up to the configured rate. A burst of 429s to requests that were in flight
together lowers the rate once, as TCP halves its window once per loss event. `per_minute = 0`
is unlimited, but not blind: a 429 is waited out (its Retry-After), and a burst of them after
20 requests or more in a minute makes what was sent in that minute, lowered, the limit — kept
while 429s come and for 15 minutes after. The window is kept in the state file, so a restart
(or a `watcher once` a minute) cannot spend it twice.

`AdaptiveLimit` — requests in flight at once, found rather than configured (AIMD, as TCP and
Netflix's concurrency-limits do): it starts low; until the first drop it grows by one with
every request that comes back while latency holds (doubling each round trip, TCP's slow
start), after it by one per full window of such requests; a 429 or a timeout halves it — once
for the requests that were out together, as TCP halves once per loss event. Always within
[1, `maximum`].
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable

from watcher.errors import BudgetSpent

WINDOW = 60.0
Wall = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

THROTTLE_FACTOR = 0.75
"""The rate in use after a 429, as a share of the rate before it."""
RECOVERY_PER_MINUTE = 1.0
"""Requests per minute given back for every minute without a 429."""
LOWER_SPACING = 10.0
"""Seconds within which further 429s are the same burst: the rate is lowered once for them."""
LEARN_FROM = 20
"""Requests an unlimited budget must have sent in the minute before a 429 to learn a limit
from it (fewer: others spend the platform's budget, and a limit that low would say nothing)."""
LEARNED_FOR = 900.0
"""Seconds after its last 429 that a limit an unlimited budget learned is kept."""


class RequestBudget:
    def __init__(self, per_minute: int, *, wall: Wall, sleep: Sleep, source: str = "") -> None:
        self.per_minute = per_minute
        self.source = source
        self.patience: float | None = None
        """The longest `take` may wait for a slot (None: as long as it takes); a longer wait
        raises `BudgetSpent` instead — `watcher once` does not sit out a spent window."""
        self._wall = wall
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._rate = float(per_minute)  # the rate in use: lower than configured after a 429
        self._calm_since: float | None = None  # since when the rate recovers
        self._lowered_at = -math.inf  # when a 429 last lowered the rate
        self._learned_until: float | None = None  # unlimited: a limit a 429 taught, till then
        self._not_before = 0.0  # no request before this (a Retry-After)
        self.throttled = 0  # 429s received

    @property
    def unlimited(self) -> bool:
        """No limit in force: none configured, and none a burst of 429s taught lately."""
        if self.per_minute > 0:
            return False
        if self._learned_until is not None and self._wall() >= self._learned_until:
            self._learned_until = None  # calm long enough: unlimited again
        return self._learned_until is None

    def rate(self, now: float | None = None) -> int:
        """Requests per minute in use now (the configured rate, less after a 429; 0 for no
        limit)."""
        if self.unlimited:
            return 0
        now = self._wall() if now is None else now
        ceiling = self.per_minute if self.per_minute > 0 else math.inf
        if self._calm_since is not None:
            minutes = max(0.0, now - self._calm_since) / 60
            self._rate = min(ceiling, self._rate + RECOVERY_PER_MINUTE * minutes)
            self._calm_since = now if self._rate < ceiling else None
        return max(1, math.floor(self._rate))

    def available(self, now: float | None = None) -> int | None:
        """Slots free now (None: unlimited)."""
        if self.unlimited:
            return None  # a Retry-After is waited out by `take`
        now = self._wall() if now is None else now
        if now < self._not_before:
            return 0
        self._expire(now)
        return max(0, self.rate(now) - len(self._sent))

    def spent(self, now: float | None = None) -> int:
        """Requests sent within the last minute."""
        self._expire(self._wall() if now is None else now)
        return len(self._sent)

    async def take(self) -> None:
        """Wait for a slot and take it (unlimited: only for a Retry-After to pass)."""
        while True:
            now = self._wall()
            wait = self._not_before - now
            if wait <= 0:
                self._expire(now)
                if self.unlimited:
                    self._sent.append(now)  # counted still: what a burst of 429s teaches
                    return
                if len(self._sent) < self.rate(now):
                    self._sent.append(now)
                    return
                wait = self._sent[0] + WINDOW - now
            await self._sleep(self._bounded(max(wait, 0.01)))

    def _bounded(self, wait: float) -> float:
        if self.patience is not None and wait > self.patience:
            raise BudgetSpent(
                self.source,
                f"request budget spent ({len(self._sent)} requests in the last minute); "
                f"the next in {wait:.0f}s",
                retry_after=wait,
            )
        return wait

    def now(self) -> float:
        return self._wall()

    def throttle(self, retry_after: float | None, *, sent_at: float | None = None) -> None:
        """The platform answered 429: wait as long as it said, and use a lower rate — once
        for a burst of 429s to requests that were in flight together. Unlimited, a 429 after
        `LEARN_FROM` requests within a minute makes what was sent then the limit (lowered
        below), until `LEARNED_FOR` passes without a 429. `sent_at`, when the refused request
        went out: one sent before the rate was last lowered is of the same burst."""
        self.throttled += 1
        now = self._wall()
        wait = 1.0 if retry_after is None else retry_after
        self._not_before = max(self._not_before, now + wait)
        if self.per_minute <= 0 and not self._learn(now):
            return
        if sent_at is not None and sent_at <= self._lowered_at:
            return  # sent before the rate was lowered: it says nothing of the lower rate
        if sent_at is None and now - self._lowered_at < LOWER_SPACING:
            return
        self._rate = max(1.0, self.rate(now) * THROTTLE_FACTOR)
        self._calm_since = self._lowered_at = now

    def _learn(self, now: float) -> bool:
        """An unlimited budget meets a 429: whether a limit is in force now."""
        if self.unlimited:
            self._expire(now)
            if len(self._sent) < LEARN_FROM:
                return False
            self._rate = float(len(self._sent))
            self._calm_since = None
        self._learned_until = now + LEARNED_FOR
        return True

    def window(self) -> list[float]:
        """When the requests of the last minute were sent (kept in the state file)."""
        self._expire(self._wall())
        return list(self._sent)

    def restore(self, sent: Iterable[float]) -> None:
        """Take the window of a previous process (at start)."""
        now = self._wall()
        self._sent = deque(sorted(t for t in sent if now - WINDOW < t <= now))

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - WINDOW:
            self._sent.popleft()


class AdaptiveLimit:
    """Requests in flight at once, additive increase / multiplicative decrease."""

    def __init__(self, maximum: int, *, initial: int = 4, tolerance: float = 2.0) -> None:
        self.maximum = maximum
        self.limit = max(1, min(initial, maximum))
        self.in_flight = 0
        self._tolerance = tolerance
        self._best: float | None = None  # the lowest latency seen: what "latency holds" means
        self._good = 0  # requests back without a drop since the last change of the limit
        self._slow_start = True  # until the first drop
        self._earlier = 0  # requests still out that were sent before the limit was last halved
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        while self.in_flight >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1

    def release(self, latency: float | None, *, dropped: bool = False) -> None:
        """A request came back after `latency` seconds; `dropped` when it met a 429 or a
        timeout (None latency: it failed otherwise, which says nothing about load)."""
        self.in_flight -= 1
        earlier = self._earlier > 0  # (requests come back about in the order they went)
        self._earlier -= earlier
        if dropped:
            if not earlier:  # the drops of requests sent together are one event: halve once
                self.limit = max(1, self.limit // 2)
                self._earlier = self.in_flight
            self._good = 0
            self._slow_start = False
        elif latency is not None:
            self._best = latency if self._best is None else min(self._best, latency)
            if latency <= self._best * self._tolerance + 0.005:
                self._good += 1
                step = 1 if self._slow_start else self.limit
                if self._good >= step and self.limit < self.maximum:
                    self.limit += 1
                    self._good = 0
        self._wake()

    def _wake(self) -> None:
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1


class Gate:
    """One request's way through a source's budget and concurrency limit, counted by purpose
    (`hints`, `runs`, `enrich`, `sweep`, `download`, …) for the metrics."""

    __slots__ = ("_budget", "_counts", "_limit", "_sent_at", "purpose")

    def __init__(
        self, budget: RequestBudget, limit: AdaptiveLimit, counts: Counter[str], purpose: str
    ) -> None:
        self._budget = budget
        self._limit = limit
        self._counts = counts
        self.purpose = purpose
        self._sent_at: float | None = None

    async def enter(self) -> None:
        await self._budget.take()
        await self._limit.acquire()
        self._sent_at = self._budget.now()
        self._counts[self.purpose] += 1

    def leave(self, latency: float | None, *, dropped: bool) -> None:
        self._limit.release(latency, dropped=dropped)

    def throttled(self, retry_after: float | None) -> None:
        self._budget.throttle(retry_after, sent_at=self._sent_at)
