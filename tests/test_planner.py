"""The planner: which agents a poll lists, in what order, within the budget. Pure: tables."""

from __future__ import annotations

import pytest

from watcher.models import Agent
from watcher.planner import FIRST_ROUND, SECOND_ROUND, Cadence, Reason, Track, plan

NOW = 10_000.0
CADENCE = Cadence(active=15, idle=900, slack=7.5)


def track(agent_id: str, listed: float | None = NOW - 1, **state: bool) -> Track:
    return Track(Agent(agent_id), None if listed is None else listed, **state)


def planned(tracks: list[Track], **kwargs: object) -> list[tuple[str, str]]:
    options: dict[str, object] = {"now": NOW, "allowance": None, "cadence": CADENCE}
    options.update(kwargs)
    return [(a.id, str(r)) for a, r in plan(tracks, **options).listings]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "listed_ago", "expected"),
    [
        ({"changed": True}, 1, "changed"),  # a moved hint is news at once
        ({"changed": True, "active": True}, 1, "changed"),
        ({"active": True}, 20, "active"),  # due every 15 s
        ({"active": True}, 10, "active"),  # 7.5 s of slack: a tick a little early counts
        ({"active": True}, 5, None),
        ({}, 899, "sweep"),
        ({}, 800, None),  # the sweep comes every 900 s
        ({}, None, "sweep"),  # never listed by this process: due
        ({"active": True}, None, "active"),
    ],
)
def test_why_an_agent_is_due(state: dict, listed_ago: float | None, expected: str | None) -> None:
    listed = None if listed_ago is None else NOW - listed_ago
    got = planned([track("1", listed, **state)])
    assert got == ([("1", expected)] if expected else [])


def test_priority_changed_then_active_then_sweep() -> None:
    tracks = [
        track("sweep", None),
        track("active", NOW - 30, active=True),
        track("changed", NOW - 1, changed=True),
        track("fresh", NOW - 1),
    ]
    assert planned(tracks) == [("changed", "changed"), ("active", "active"), ("sweep", "sweep")]


def test_the_most_overdue_first_and_ties_keep_the_sweep_order() -> None:
    tracks = [
        track("c", None),
        track("a", NOW - 2000),
        track("b", NOW - 5000),
        track("d", None),
        track("x", NOW - 40, active=True),
        track("y", NOW - 90, active=True),
    ]
    assert [a for a, _ in planned(tracks)] == ["y", "x", "c", "d", "b", "a"]


def test_the_allowance_cuts_from_the_lowest_priority_and_says_so() -> None:
    tracks = [track(str(i), None) for i in range(10)] + [track("hot", changed=True)]
    result = plan(tracks, now=NOW, allowance=4, cadence=CADENCE)
    assert [(a.id, r) for a, r in result.listings] == [
        ("hot", Reason.CHANGED),
        ("0", Reason.SWEEP),
        ("1", Reason.SWEEP),
        ("2", Reason.SWEEP),
    ]
    assert result.skipped == {"budget": 7}
    assert plan(tracks, now=NOW, allowance=0, cadence=CADENCE).skipped == {"budget": 11}


def test_rounds_plan_only_their_reasons() -> None:
    tracks = [track("s", None), track("c", changed=True), track("a", NOW - 60, active=True)]
    assert planned(tracks, reasons=FIRST_ROUND) == [("c", "changed"), ("a", "active")]
    assert planned(tracks, reasons=SECOND_ROUND) == [("s", "sweep")]


def test_force_makes_every_agent_due() -> None:
    tracks = [track("idle", NOW - 1), track("busy", NOW - 1, active=True)]
    assert planned(tracks) == []
    assert planned(tracks, force=True) == [("busy", "active"), ("idle", "sweep")]
