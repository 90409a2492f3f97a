"""Where an agent stands after its finishes: a table of folds, and what an alert is told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watcher.standing import Standing, standings

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_failures_in_a_row_count_until_a_success() -> None:
    s = standings(
        [
            ("a", "success", at(0), 60.0, 1000),
            ("a", "failure", at(10), 5.0, 3),
            ("a", "stopped", at(15), None, None),  # neither counts nor breaks the streak
            ("a", "failure", at(20), 5.0, 3),
            ("b", "failure", at(5), None, None),
        ]
    )
    a = s["a"]
    assert (a.last_outcome, a.failures, a.failing_since, a.last_success) == (
        "failure",
        2,
        at(10),
        at(0),
    )
    assert a.fields() == {
        "failures_in_a_row": 2,
        "failing_since": "2026-11-23T12:10:00Z",
        "last_success": "2026-11-23T12:00:00Z",
    }
    a.finished("success", at(30))
    assert (a.failures, a.failing_since, a.last_success, a.last_finish) == (0, None, at(30), at(30))
    assert s["b"].failures == 1 and s["b"].last_success is None


def test_a_finish_without_an_end_time_keeps_what_is_known() -> None:
    s = Standing()
    s.finished("success", at(1))
    s.finished("failure", None)
    assert (s.failures, s.failing_since, s.last_finish, s.last_success) == (1, None, at(1), at(1))
