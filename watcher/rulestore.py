"""The part of the state file the rules need: the runs they watch, what they already said,
the starts they expect, the retries they asked for — and, for the status view, which of their
findings still hold.

`Store` provides the connection and the transactions; these are its rule-side queries.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import astuple, dataclass
from datetime import datetime
from typing import Literal

from watcher.codec import iso, parse_iso
from watcher.runs import RunSnapshot

STARTED = (
    "coalesce(json_extract(snapshot, '$.started_at'), json_extract(snapshot, '$.ended_at'), "
    "first_seen)"
)
"""When a run started, for a schedule: as the platform says it started; for a run that never
did — a Skipped run, a schedule firing for an archived agent — when the platform says it ended
(the schedule fired then, however late watcher lists it); else when watcher first saw it."""


@dataclass(frozen=True, slots=True)
class RetryRow:
    """One retry of a failed run: its `try` (1…max), when it is due, where it stands."""

    source: str
    agent_id: str
    run_id: str
    """The run that failed first: every retry of it counts against the rule's `max`."""
    try_: int
    due_at: float
    state: str
    """scheduled → sending → sent or failed; sending at a start means the outcome is unknown
    (a crash while the request was out): it is marked unknown and never repeated blindly."""
    new_run_id: str | None = None
    """The run the retry started, where the platform starts a new one (Sequentum Cloud)."""
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's finding that still holds: a run reported stuck that has not finished (the same
    attempt), or an agent's latest missed schedule slot with no run started since."""

    source: str
    agent_id: str
    mark: Literal["stuck", "missed"]
    since: datetime
    """When the rule reported it."""
    message: str | None
    run_id: str | None = None
    """The stuck run."""
    expected_at: datetime | None = None
    """The missed slot."""
    schedule: str | None = None
    """The schedule of the missed slot, as the rule or the platform names it."""


class RuleQueries:
    """The rule-side queries of `Store`."""

    _db: sqlite3.Connection
    _rows: int

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def active_runs(self, source: str) -> list[tuple[str, str, int, datetime, str, str | None]]:
        """Runs not finished: (agent, run, attempt, started — or first seen —, status, url)."""
        rows = self._db.execute(
            "SELECT agent_id, run_id, attempt, json_extract(snapshot, '$.started_at'), "
            "first_seen, status, json_extract(snapshot, '$.url') FROM runs "
            "WHERE source = ? AND phase != 'finished'",
            (source,),
        )
        out = []
        for agent_id, run_id, attempt, started, first_seen, status, url in rows:
            moment = parse_iso(started) or parse_iso(first_seen)
            if moment is not None:
                out.append((agent_id, run_id, attempt, moment, status, url))
        return out

    def starts(self, source: str, agent_id: str) -> dict[str, datetime]:
        """When each of the agent's runs started (`STARTED`), by run id."""
        rows = self._db.execute(
            f"SELECT run_id, {STARTED} FROM runs WHERE source = ? AND agent_id = ?",
            (source, agent_id),
        )
        return {run_id: at for run_id, moment in rows if (at := parse_iso(moment)) is not None}

    def run(self, source: str, agent_id: str, run_id: str) -> RunSnapshot | None:
        """The run as last written."""
        row = self._db.execute(
            "SELECT snapshot FROM runs WHERE source = ? AND agent_id = ? AND run_id = ?",
            (source, agent_id, run_id),
        ).fetchone()
        return RunSnapshot.from_dict(json.loads(row[0])) if row else None

    def reported(self, source: str, type: str) -> set[tuple[str, str, int]]:
        """(agent, run, attempt) of the events of `type` the source recorded."""
        rows = self._db.execute(
            "SELECT json_extract(body, '$.source'), json_extract(body, '$.agent_id'), "
            "json_extract(body, '$.run_id'), json_extract(body, '$.attempt') FROM events "
            "WHERE type = ?",
            (type,),
        )
        return {(a, r, int(n or 0)) for s, a, r, n in rows if s == source and a and r}

    def open_findings(self) -> list[Finding]:
        """The rules' findings that still hold, of every source: the runs reported stuck and
        not finished since, then per agent its latest missed slot if no run of it started at
        or after that slot (`STARTED`)."""
        stuck = self._db.execute(
            "WITH stuck AS (SELECT ts, json_extract(body, '$.source') AS source, "
            "json_extract(body, '$.agent_id') AS agent_id, "
            "json_extract(body, '$.run_id') AS run_id, "
            "coalesce(json_extract(body, '$.attempt'), 0) AS attempt, "
            "json_extract(body, '$.message') AS message FROM events WHERE type = 'run.stuck') "
            "SELECT stuck.source, stuck.agent_id, stuck.ts, stuck.message, stuck.run_id "
            "FROM stuck JOIN runs ON runs.source = stuck.source "
            "AND runs.agent_id = stuck.agent_id AND runs.run_id = stuck.run_id "
            "WHERE runs.phase != 'finished' AND runs.attempt = stuck.attempt ORDER BY stuck.ts"
        )
        found = [
            Finding(source, agent_id, "stuck", at, message, run_id=run_id)
            for source, agent_id, ts, message, run_id in stuck
            if (at := parse_iso(ts)) is not None
        ]
        return found + [m for m in self._latest_missed() if not self._started_since(m)]

    def _latest_missed(self) -> list[Finding]:
        """Each agent's latest missed slot."""
        rows = self._db.execute(
            "SELECT ts, json_extract(body, '$.source'), json_extract(body, '$.agent_id'), "
            "json_extract(body, '$.message'), json_extract(body, '$.expected_at'), "
            "json_extract(body, '$.schedule') FROM events WHERE type = 'agent.missed_schedule'"
        )
        latest: dict[tuple[str, str], Finding] = {}
        for ts, source, agent_id, message, expected, schedule in rows:
            at, slot = parse_iso(ts), parse_iso(expected)
            if at is None or slot is None or not source or not agent_id:
                continue
            known = latest.get((source, agent_id))
            if known is None or (known.expected_at is not None and slot > known.expected_at):
                latest[(source, agent_id)] = Finding(
                    source, agent_id, "missed", at, message, expected_at=slot, schedule=schedule
                )
        return sorted(latest.values(), key=lambda f: f.since)

    def _started_since(self, missed: Finding) -> bool:
        """Did a run of the agent start at or after its missed slot?"""
        slot = missed.expected_at
        assert slot is not None
        return any(at >= slot for at in self.starts(missed.source, missed.agent_id).values())

    def has_event(self, event_id: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone()
            is not None
        )

    # --- expected starts ---------------------------------------------------------------------

    def expect(
        self, source: str, starts: Sequence[tuple[str, datetime, str]], now: datetime
    ) -> None:
        """Replace the source's expected starts still to come with `starts` — (agent, at,
        schedule) — as the platform announces them now; the past ones wait to be judged."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM expected_starts WHERE source = ? AND at > ?", (source, iso(now))
            )
            db.executemany(
                "INSERT OR IGNORE INTO expected_starts(source, agent_id, at, schedule) "
                "VALUES (?, ?, ?, ?)",
                [(source, agent, iso(at), name) for agent, at, name in starts if at > now],
            )
            self._rows += len(starts)

    def expected(self, source: str, until: datetime) -> list[tuple[str, datetime, str]]:
        """Expected starts due by `until`: (agent, at, schedule)."""
        rows = self._db.execute(
            "SELECT agent_id, at, schedule FROM expected_starts WHERE source = ? AND at <= ? "
            "ORDER BY at",
            (source, iso(until)),
        )
        return [(a, at, name) for a, when, name in rows if (at := parse_iso(when)) is not None]

    def judged(self, source: str, agent_id: str, at: datetime) -> None:
        """An expected start was judged: forget it."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM expected_starts WHERE source = ? AND agent_id = ? AND at = ?",
                (source, agent_id, iso(at)),
            )

    # --- retries -----------------------------------------------------------------------------

    def retries(self, source: str) -> list[RetryRow]:
        rows = self._db.execute(
            "SELECT source, agent_id, run_id, try, due_at, state, new_run_id, detail "
            "FROM retries WHERE source = ? ORDER BY due_at",
            (source,),
        )
        return [RetryRow(*row) for row in rows]

    def _write_retries(self, db: sqlite3.Connection, rows: Sequence[RetryRow]) -> None:
        """Write retry rows within the caller's transaction (`Store.commit`)."""
        db.executemany(
            "INSERT INTO retries(source, agent_id, run_id, try, due_at, state, new_run_id, "
            "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(source, run_id, try) DO "
            "UPDATE SET due_at=excluded.due_at, state=excluded.state, "
            "new_run_id=excluded.new_run_id, detail=excluded.detail",
            [astuple(row) for row in rows],  # the columns, in the order of the fields
        )
        self._rows += len(rows)
