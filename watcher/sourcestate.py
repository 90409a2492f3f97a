"""What the state file keeps of each source as a whole, in the `sources` table: whether it is
failing (`SourceHealth`), so that a restart during an outage does not alert again, and where it
stands (`SourceMarks`: its last successful poll, the sweep's place, the request budget's last
minute), so that a restart goes on where the last process stopped.

The two are written apart (`Store.commit` with `health` or `marks`): each leaves the other's
columns as they are.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from watcher.codec import iso, parse_iso


@dataclass(frozen=True, slots=True)
class SourceMarks:
    """Where a source stands, kept across restarts: written with other writes, at least once
    a minute, and at shutdown (`SourcePoller.save_marks`)."""

    last_success: datetime | None = None
    cursor: str | None = None
    """The agent the sweep listed last: the next sweep goes on after it."""
    budget: tuple[float, ...] = ()
    """When the requests of the last minute were sent (`RequestBudget.window`)."""


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """Whether a source is failing, since when and why (`watcher.outages` decides)."""

    failing: bool
    since: datetime | None = None
    last_error: str | None = None
    pending: bool = False
    """Failing for less than its `source_failed_after`: `source.failed` not said (yet)."""


class SourceQueries:
    """The source-side queries of `Store` (which provides the connection)."""

    _db: sqlite3.Connection

    def last_success(self, source: str) -> datetime | None:
        """When the source last polled successfully: runs of an agent seen for the first time
        are news if they finished after it (see `diff_agent`'s `since`)."""
        return self.marks(source).last_success

    def marks(self, source: str) -> SourceMarks:
        row = self._db.execute(
            "SELECT last_success, cursor, budget FROM sources WHERE source = ?", (source,)
        ).fetchone()
        if row is None:
            return SourceMarks()
        window = tuple(float(t) for t in json.loads(row[2])) if row[2] else ()
        return SourceMarks(parse_iso(row[0]), row[1], window)

    def source_health(self, source: str) -> SourceHealth:
        row = self._db.execute(
            "SELECT failing, since, last_error, pending FROM sources WHERE source = ?", (source,)
        ).fetchone()
        if row is None:
            return SourceHealth(failing=False)
        return SourceHealth(bool(row[0]), parse_iso(row[1]), row[2], bool(row[3]))

    def _write_health(
        self, db: sqlite3.Connection, source: str | None, health: SourceHealth | None
    ) -> int:
        """Write whether the source is failing (its marks are left as they are)."""
        if health is None:
            return 0
        assert source is not None
        db.execute(
            "INSERT INTO sources(source, failing, since, last_error, pending) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET "
            "failing=excluded.failing, since=excluded.since, "
            "last_error=excluded.last_error, pending=excluded.pending",
            (
                source,
                int(health.failing),
                iso(health.since),
                health.last_error,
                int(health.pending),
            ),
        )
        return 1

    def _write_marks(
        self, db: sqlite3.Connection, source: str | None, marks: SourceMarks | None
    ) -> int:
        """Write where the source stands (its health is left as it is)."""
        if marks is None:
            return 0
        assert source is not None
        db.execute(
            "INSERT INTO sources(source, failing, last_success, cursor, budget) "
            "VALUES (?, 0, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET "
            "last_success=excluded.last_success, cursor=excluded.cursor, "
            "budget=excluded.budget",
            (
                source,
                iso(marks.last_success),
                marks.cursor,
                json.dumps(marks.budget) if marks.budget else None,
            ),
        )
        return 1
