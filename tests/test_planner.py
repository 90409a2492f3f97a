"""The planner: which agents a poll lists, in what order, within the budget. Pure: tables."""

from __future__ import annotations

import pytest

from watcher.planner import HINTED, SWEPT, Cadence, Reason, Track, plan
from watcher.runs import Agent

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


def test_with_hints_changed_then_the_sweep_then_active_agents() -> None:
    tracks = [
        track("sweep", None),
        track("active", NOW - 30, active=True),
        track("changed", NOW - 1, changed=True),
        track("fresh", NOW - 1),
    ]
    assert planned(tracks) == [("changed", "changed"), ("sweep", "sweep"), ("active", "active")]


def test_an_agent_running_that_was_never_listed_comes_first_in_its_round() -> None:
    tracks = [
        track("idle", None),
        track("known", NOW - 30, active=True),
        track("running", None, active=True),
        track("changed", NOW - 1, changed=True),
    ]
    assert planned(tracks, reasons=HINTED.second) == [
        ("running", "active"), ("idle", "sweep"), ("known", "active"),
    ]  # fmt: skip
    assert planned(tracks, reasons=HINTED.first) == [("changed", "changed")]
    fair = planned(tracks, reasons=SWEPT.second, fair=True)
    assert fair[0] == ("running", "active")


def test_the_least_recently_listed_first_and_ties_keep_the_sweep_order() -> None:
    tracks = [
        track("c", None),
        track("a", NOW - 2000),
        track("b", NOW - 5000),
        track("d", None),
        track("x", NOW - 40, active=True),
        track("y", NOW - 90, active=True),
    ]
    assert [a for a, _ in planned(tracks)] == ["c", "d", "b", "a", "y", "x"]


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
    assert planned(tracks, reasons=HINTED.first) == [("c", "changed")]
    assert planned(tracks, reasons=HINTED.second) == [("s", "sweep"), ("a", "active")]


def test_without_hints_active_and_idle_agents_share_by_how_overdue_they_are() -> None:
    cadence = Cadence(active=15, idle=60)
    tracks = [
        track("idle-2x", NOW - 120),  # two of its intervals
        track("busy-3x", NOW - 45, active=True),  # three of its intervals
        track("idle-1x", NOW - 61),
        track("busy-1x", NOW - 16, active=True),
    ]
    got = planned(tracks, cadence=cadence, reasons=SWEPT.second, fair=SWEPT.fair)
    assert [a for a, _ in got] == ["busy-3x", "idle-2x", "busy-1x", "idle-1x"]


def test_force_makes_every_agent_due() -> None:
    tracks = [track("idle", NOW - 1), track("busy", NOW - 1, active=True)]
    assert planned(tracks) == []
    assert planned(tracks, force=True) == [("idle", "sweep"), ("busy", "active")]


def test_among_changed_agents_a_settled_run_and_the_oldest_change_come_first() -> None:
    tracks = [
        Track(Agent("moving"), None, True, True, settled=False, changed_at=NOW - 100),
        Track(Agent("new"), None, False, True, settled=True, changed_at=NOW - 5),
        Track(Agent("older"), NOW - 9, False, True, settled=True, changed_at=NOW - 50),
    ]
    assert [a for a, _ in planned(tracks, allowance=2)] == ["older", "new"]


def test_a_round_leaves_one_listing_to_a_later_one_with_an_agent_due() -> None:
    changed = [track(str(i), changed=True) for i in range(5)]
    idle = track("idle", None)
    first = {"reasons": HINTED.first, "leave_for": HINTED.second}
    assert len(planned([*changed, idle], allowance=3, **first)) == 2
    assert len(planned(changed, allowance=3, **first)) == 3  # nobody waits: all of it
    assert len(planned([*changed, idle], allowance=1, **first)) == 1  # one is not split
    assert len(planned([*changed, idle], allowance=None, **first)) == 5
