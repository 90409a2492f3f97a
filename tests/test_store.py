"""The state file: atomic commits, no-op polls write nothing, outbox semantics, crash safety."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.codec import iso
from watcher.diff import diff_agent
from watcher.events import Event, EventType, source_event
from watcher.runstore import AgentRecord
from watcher.schema import SCHEMA_VERSION
from watcher.sinks.eventlog import EventLog
from watcher.sourcestate import SourceHealth
from watcher.statefile import StateFileError
from watcher.store import Store

from .test_diff import snap

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "state.db")
    yield s
    s.close()


def commit_listing(store: Store, listing, *, now=T0, route=lambda e: ["eventlog"]):
    previous = store.load_runs("cloud").get("2537")
    result = diff_agent(previous, listing, now=now, source_kind="sequentum_cloud")
    return store.commit(
        source="cloud",
        changes=result.changes,
        agents=[AgentRecord("2537", "steam")] if previous is None else [],
        events=result.events,
        targets=Targets(route),
        now=now,
        now_ts=now.timestamp(),
    )


class Targets(dict):
    """Where each event goes, as the dispatcher would say: `route(event)`, asked as the
    store writes (so a route that raises does so inside the transaction)."""

    def __init__(self, route) -> None:
        super().__init__()
        self.route = route

    def get(self, event_id, default=()):
        return self.route(event_id)


def test_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store.open(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone() == (str(SCHEMA_VERSION),)
    finally:
        store.close()


def test_a_poll_that_changes_nothing_writes_nothing(store: Store, tmp_path: Path) -> None:
    commit_listing(store, [snap("1", 1), snap("2", 9)])
    before = store.counters
    files = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    assert commit_listing(store, [snap("1", 1), snap("2", 9)], now=T0 + timedelta(seconds=15)) == []
    assert store.counters == before
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == files
    assert {p.name: p.stat().st_size for p in tmp_path.iterdir()} == sizes


def test_changes_and_their_events_commit_together(store: Store) -> None:
    commit_listing(store, [snap("1", 1)])
    fresh = commit_listing(store, [snap("1", 6)], now=T0 + timedelta(seconds=15))
    assert [e.type for e in fresh] == ["run.status_changed", "run.finished"]
    assert store.load_runs("cloud")["2537"]["1"].status == "Failure"
    due = store.due(T0.timestamp() + 60)
    assert [(p.event.type, p.target) for p in due] == [
        ("run.status_changed", "eventlog"),
        ("run.finished", "eventlog"),
    ]


def test_a_failing_commit_changes_nothing(store: Store) -> None:
    commit_listing(store, [snap("1", 1)])

    def broken_route(event):
        raise RuntimeError("sink registry exploded")

    with pytest.raises(RuntimeError):
        commit_listing(store, [snap("1", 6)], now=T0 + timedelta(seconds=15), route=broken_route)
    assert store.load_runs("cloud")["2537"]["1"].status == "Running"
    assert store.events() == []
    assert store.outbox_depth() == 0


def test_replayed_events_are_recognised(store: Store) -> None:
    commit_listing(store, [])
    fresh = commit_listing(store, [snap("1", 6)])
    again = store.commit(events=fresh, targets=Targets(lambda e: ["eventlog"]), now=T0, now_ts=0)
    assert again == []
    assert store.outbox_depth() == len(fresh)


def test_outbox_rows_leave_only_when_delivered(store: Store) -> None:
    commit_listing(store, [])
    commit_listing(store, [snap("1", 6)], route=lambda e: ["a", "b"])
    now = T0.timestamp()
    a = store.due(now, targets=["a"])
    store.retry_later(a, error="boom", next_at=lambda p: now + 30)
    assert store.due(now, targets=["a"]) == []
    assert len(store.due(now + 31, targets=["a"])) == 2
    assert store.due(now + 31, targets=["a"])[0].attempts == 1
    store.delivered(store.due(now, targets=["b"]))
    assert store.outbox_depth() == 2
    assert store.next_due() == pytest.approx(now + 30)


def test_source_health_survives_reopen(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    event = source_event(EventType.SOURCE_FAILED, source="cloud", source_kind="k", ts=T0)
    store.commit(
        source="cloud",
        health=SourceHealth(True, T0, "HTTP 503"),
        events=[event],
        now=T0,
        now_ts=0,
    )
    store.close()
    again = Store.open(tmp_path / "s.db")
    try:
        assert again.source_health("cloud") == SourceHealth(True, T0, "HTTP 503")
        assert again.source_health("other") == SourceHealth(False)
    finally:
        again.close()


def test_latest_runs_for_status(store: Store) -> None:
    commit_listing(store, [snap("8", 9), snap("10", 1), snap("9", 6)])
    latest = store.latest_runs()
    assert [(s.agent_id, s.run_id, s.status) for s in latest] == [("2537", "10", "Running")]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path / "s.db").close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StateFileError, match="written by a newer watcher"):
        Store.open(tmp_path / "s.db")


# --- the events file ----------------------------------------------------------------------------


async def test_eventlog_writes_each_event_once_even_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = [
        source_event(EventType.SOURCE_FAILED, source="c", source_kind="k", ts=T0, id_parts=(i,))
        for i in range(3)
    ]
    await EventLog(path).deliver(events[:2], lambda ids: None)
    # A crash after writing but before marking delivered: a new process gets all three again.
    await EventLog(path).deliver(events, lambda ids: None)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == [e.id for e in events]


async def test_eventlog_recovers_from_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"id": "torn", "type": "run.fin')
    event = source_event(EventType.SOURCE_FAILED, source="c", source_kind="k", ts=T0)
    await EventLog(path).deliver([event], lambda ids: None)
    last = path.read_text().splitlines()[-1]
    assert json.loads(last)["id"] == event.id


# --- kill -9 during commits ---------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from watcher.store import Store
    from watcher.diff import diff_agent
    from watcher.runstore import AgentRecord
    from tests.test_diff import snap

    store = Store.open(sys.argv[1])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    print("ready", flush=True)
    for i in range(10**9):
        now += timedelta(seconds=1)
        listing = [snap(str(r), (i + r) % 13) for r in range(50)]
        prev = store.load_runs("cloud").get("2537")
        res = diff_agent(prev, listing, now=now, source_kind="k")
        store.commit(source="cloud", changes=res.changes, events=res.events,
                     agents=[AgentRecord("2537")] if prev is None else [],
                     targets={e.id: ["eventlog"] for e in res.events},
                     now=now, now_ts=now.timestamp())
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.31])
def test_kill_9_during_commits_leaves_a_sound_file(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "state.db"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=root,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store.open(path)
    try:
        assert store.integrity_check() == "ok"
        # Runs and their events committed together: every event still has its outbox row, and
        # every run that finished after a reopen has the finished event of that attempt.
        events = store.events()
        assert store.outbox_depth() == len(events)
        finished = {(e.run_id, e.attempt) for e in events if e.type == "run.finished"}
        for run_id, state in store.load_runs("cloud").get("2537", {}).items():
            if state.outcome is not None and state.attempt > 0:
                assert (run_id, state.attempt) in finished
    finally:
        store.close()


def test_recent_events_newest_first_and_events_after_an_id_bounded(store: Store) -> None:
    events = [
        source_event(
            EventType.SOURCE_FAILED,
            source="cloud",
            source_kind="sequentum_cloud",
            ts=T0 + timedelta(seconds=n),
            id_parts=(n,),
        )
        for n in range(7)
    ]
    store.commit(events=events, now=T0, now_ts=T0.timestamp())
    ids = [e.id for e in events]
    assert [e["id"] for e in store.recent_events(3)] == ids[:-4:-1]  # the newest 3, newest first
    assert [e["id"] for e in store.recent_events()] == ids[::-1]

    replay = store.events_after(ids[2], limit=10)
    assert replay is not None and not replay.more
    assert replay.events == events[3:]  # the events themselves, as recorded
    bounded = store.events_after(ids[2], limit=2)
    assert bounded is not None and bounded.more and [e.id for e in bounded.events] == ids[3:5]
    last = store.events_after(ids[-1], limit=10)
    assert last is not None and last.events == [] and not last.more
    assert store.events_after("no-such-id", limit=10) is None  # never recorded, or pruned


def rule_event(type: str, at: datetime, *, run_id: str | None = None, **data: object) -> Event:
    """An event the rules would record about agent 2537 of "cloud" at `at`."""
    return Event(
        id=f"{type}-{run_id}-{iso(at)}",
        type=type,
        ts=at,
        source="cloud",
        source_kind="sequentum_cloud",
        agent_id="2537",
        run_id=run_id,
        message=f"{type} at {iso(at)}",
        data=tuple(sorted(data.items())),
    )


def test_a_stuck_mark_holds_until_its_attempt_finishes_not_when_the_run_reopens(store) -> None:
    commit_listing(store, [snap("1", 1)])
    stuck = rule_event("run.stuck", T0 + timedelta(hours=2), run_id="1")
    store.commit(events=[stuck], now=stuck.ts, now_ts=stuck.ts.timestamp())
    [finding] = store.open_findings()
    assert (finding.mark, finding.run_id, finding.since) == ("stuck", "1", stuck.ts)
    commit_listing(store, [snap("1", 6)], now=T0 + timedelta(hours=3))  # it fails
    assert store.open_findings() == []
    commit_listing(store, [snap("1", 1)], now=T0 + timedelta(hours=4))  # restarted in place
    assert store.load_runs("cloud")["2537"]["1"].attempt == 1
    assert store.open_findings() == []  # the report was of the attempt that finished


def test_a_missed_mark_is_the_latest_slot_until_a_run_starts_at_or_after_it(store) -> None:
    commit_listing(store, [snap("1", 9)])
    for hours in (3, 1):  # recorded out of order: the latest slot is the one marked
        slot = T0 + timedelta(hours=hours)
        missed = rule_event(
            "agent.missed_schedule", slot + timedelta(minutes=10), expected_at=iso(slot),
            schedule="0 * * * * UTC",
        )  # fmt: skip
        store.commit(events=[missed], now=missed.ts, now_ts=missed.ts.timestamp())
    [finding] = store.open_findings()
    assert (finding.mark, finding.expected_at, finding.schedule) == (
        "missed", T0 + timedelta(hours=3), "0 * * * * UTC",
    )  # fmt: skip
    commit_listing(store, [snap("1", 9), snap("2", 1)], now=T0 + timedelta(hours=2, minutes=59))
    assert len(store.open_findings()) == 1  # started before the slot: it did not make it
    commit_listing(store, [snap("1", 9), snap("2", 1), snap("3", 1)], now=T0 + timedelta(hours=3))
    assert store.open_findings() == []
