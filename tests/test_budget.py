"""The request budget (never more than N requests in any 60 s; slower after a 429) and the
adaptive concurrency limit (AIMD), with an injected clock."""

from __future__ import annotations

import asyncio
import math

import pytest

from watcher.sources.budget import (
    LEARN_FROM,
    LEARNED_FOR,
    LOWER_SPACING,
    THROTTLE_FACTOR,
    WINDOW,
    AdaptiveLimit,
    RequestBudget,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.t += delay


def budget(per_minute: int, clock: Clock) -> RequestBudget:
    return RequestBudget(per_minute, wall=clock, sleep=clock.sleep)


async def test_never_more_than_the_rate_in_any_minute() -> None:
    clock = Clock()
    b = budget(10, clock)
    sent: list[float] = []
    for _ in range(35):
        await b.take()
        sent.append(clock.t)
        clock.t += 0.7  # a request takes a while
    for start in sent:  # any window of 60 s, starting at any request
        assert sum(1 for t in sent if start <= t < start + 60) <= 10
    assert clock.slept  # it waited rather than going over


async def test_available_counts_the_free_slots_of_the_window() -> None:
    clock = Clock()
    b = budget(5, clock)
    assert b.available() == 5
    for _ in range(3):
        await b.take()
    assert (b.available(), b.spent()) == (2, 3)
    clock.t += 60
    assert (b.available(), b.spent()) == (5, 0)


async def test_unlimited_never_waits() -> None:
    clock = Clock()
    b = budget(0, clock)
    for _ in range(1000):
        await b.take()
    assert b.available() is None and b.unlimited and clock.slept == []


async def test_a_429_slows_down_honours_retry_after_and_recovers() -> None:
    clock = Clock()
    b = budget(90, clock)
    b.throttle(12.0)
    assert b.throttled == 1 and b.rate() == 67  # 90 × 0.75
    assert b.available() == 0  # nothing before the Retry-After
    await b.take()
    assert clock.slept == [12.0]
    clock.t += 60 * 10  # ten quiet minutes give ten requests a minute back
    assert b.rate() == 77
    clock.t += 60 * 30
    assert b.rate() == 90  # never above the configured rate


async def test_repeated_429s_lower_the_rate_but_never_to_zero() -> None:
    clock = Clock()
    b = budget(4, clock)
    for _ in range(20):
        b.throttle(None)  # no Retry-After: a second's pause
        clock.t += LOWER_SPACING
    assert b.rate() == 1
    assert b.available() == 1


async def test_a_burst_of_429s_lowers_the_rate_once() -> None:
    clock = Clock()
    b = budget(100, clock)
    for _ in range(64):  # every request in flight refused at once
        b.throttle(None)
    assert b.rate() == 75 and b.throttled == 64
    clock.t += LOWER_SPACING  # a later 429: the rate was not low enough
    b.throttle(None)
    assert b.rate() == 56


async def test_a_429_to_a_request_sent_before_the_rate_was_lowered_lowers_it_no_further() -> None:
    clock = Clock()
    b = budget(100, clock)
    early, late = clock.t, clock.t + 1
    clock.t += 2
    b.throttle(None, sent_at=early)
    assert b.rate() == 75
    clock.t += 30  # a slow answer, long after: its request went out before the lowering
    b.throttle(None, sent_at=late)
    assert b.rate() == 75
    b.throttle(None, sent_at=clock.t)  # one sent at the lower rate, and still refused
    assert b.rate() == 56


async def test_an_unlimited_budget_learns_a_limit_from_a_burst_of_429s_and_forgets_it() -> None:
    clock = Clock()
    b = budget(0, clock)
    await b.take()
    b.throttle(5)  # one 429 after one request: others spend the platform's budget
    assert b.unlimited and b.available() is None
    clock.t += 5
    for _ in range(LEARN_FROM * 2):  # forty requests within the minute, then a 429
        await b.take()
    b.throttle(None)
    assert not b.unlimited
    assert b.rate() == math.floor((LEARN_FROM * 2 + 1) * THROTTLE_FACTOR)  # what was sent, lowered
    assert b.available() == 0  # the minute's requests fill it
    clock.t += WINDOW
    assert b.available() == b.rate()
    clock.t += LEARNED_FOR  # no 429 since: unlimited again
    assert b.unlimited and b.rate() == 0 and b.available() is None


async def test_the_window_survives_a_restart() -> None:
    clock = Clock()
    first = budget(5, clock)
    for _ in range(4):
        await first.take()
        clock.t += 1
    second = budget(5, clock)  # a new process, a few seconds later
    second.restore([*first.window(), clock.t - 3600])  # an old entry is dropped
    assert second.available() == 1


async def test_concurrency_grows_while_latency_holds_and_halves_on_a_drop() -> None:
    limit = AdaptiveLimit(64, initial=4)
    for _ in range(4):  # slow start: one more per request that comes back quickly
        await limit.acquire()
        limit.release(0.02)
    assert limit.limit == 8
    await limit.acquire()
    limit.release(None, dropped=True)  # a 429 or a timeout
    assert limit.limit == 4
    for _ in range(4):  # after a drop: one more per full window of good requests
        await limit.acquire()
        limit.release(0.02)
    assert limit.limit == 5
    for _ in range(20):
        await limit.acquire()
        limit.release(0.5)  # latency no longer holds: no growth
    assert limit.limit == 5


async def test_concurrency_never_passes_its_maximum_or_falls_below_one() -> None:
    limit = AdaptiveLimit(6, initial=4)
    for _ in range(50):
        await limit.acquire()
        limit.release(0.01)
    assert limit.limit == 6
    for _ in range(10):
        await limit.acquire()
        limit.release(None, dropped=True)
    assert limit.limit == 1


async def test_drops_of_requests_out_together_halve_the_limit_once() -> None:
    limit = AdaptiveLimit(64, initial=32)
    for _ in range(32):
        await limit.acquire()
    for _ in range(32):  # a 429 for every one of them
        limit.release(None, dropped=True)
    assert limit.limit == 16
    await limit.acquire()
    limit.release(None, dropped=True)  # sent after the halving: a new event
    assert limit.limit == 8


async def test_requests_beyond_the_limit_wait_their_turn() -> None:
    limit = AdaptiveLimit(64, initial=2)
    running = 0
    most = 0

    async def request() -> None:
        nonlocal running, most
        await limit.acquire()
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)
        running -= 1
        limit.release(None)  # a failure that says nothing about load: no growth

    await asyncio.gather(*(request() for _ in range(10)))
    assert most == 2 and limit.in_flight == 0


@pytest.mark.parametrize("per_minute", [1, 7, 90])
async def test_available_never_exceeds_the_rate(per_minute: int) -> None:
    clock = Clock()
    b = budget(per_minute, clock)
    assert b.available() == per_minute
