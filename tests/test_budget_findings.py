"""Known faults of the request budget, found by `bench/bench.py budget` (see bench/README.md).

Each test states what should happen and fails today (xfail, strict): when the product is
fixed, the test passes, pytest reports XPASS as a failure, and the marker comes off.
"""

from __future__ import annotations

import pytest


@pytest.mark.xfail(
    strict=True,
    reason="with requests_per_minute = 0 a 429 is retried at once: the HTTP layer leaves the "
    "wait to the budget, and an unlimited budget ignores Retry-After",
)
async def test_an_unlimited_budget_still_waits_out_a_429(world, app_factory, no_sleep):
    world.add_agent(id=2537, name="steam")
    world.add_run(2537, status=9, run_id=100)
    world.inject("/api/v1/agent/2537/runs", kind="http", status=429, headers={"Retry-After": "7"})
    async with app_factory(use_hints=False, requests_per_minute=0, retries=3) as app:
        (report,) = await app.once()
    assert report.ok
    runs = [c for c in world.calls if c.path == "/api/v1/agent/2537/runs"]
    assert [c.status for c in runs] == [429, 200]
    assert no_sleep.delays == [7.0]  # the platform said: not before 7 s
