"""The state file: one SQLite database (WAL) holding everything watcher must not forget.

- `runs`: the last snapshot of every run, with the state the diff engine needs.
- `agents`: the agents each source has baselined.
- `listings`: a hash of the last listing body whose meaning each agent's runs hold, so that an
  identical listing after a restart is recognised without being parsed.
- `sources`: whether each source is failing, so a restart during an outage does not re-alert.
- `events` + `outbox`: the transactional outbox. A poll's run changes and the events they cause
  commit in one transaction, together with one outbox row per (event, target) that must receive
  it. A sink's delivery removes its row only after it succeeded, so a crash at any point loses
  nothing and repeats at most the delivery that was in flight.
- `silences`, `alert_marks` and the outbox's `held`: noise control (`watcher.noise.records`).

A commit with nothing in it does not touch the file. All methods are synchronous and short;
the daemon calls them from its event loop.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from watcher import statefile
from watcher.diff import Change
from watcher.history import EventQueries
from watcher.models import Event, Hint, Outcome, Phase, RunSnapshot, RunState, iso, parse_iso
from watcher.noise.records import NoiseQueries
from watcher.outbox import OutboxQueries, OutboxTarget, Pending, Targets
from watcher.rulestore import RetryRow, RuleQueries
from watcher.schema import SCHEMA_VERSION, migrate
from watcher.standing import Finish

__all__ = ["AgentRecord", "OutboxTarget", "Pending", "SourceHealth", "SourceMarks", "Store"]


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """What the state file keeps of an agent besides its runs."""

    id: str
    name: str | None = None
    hint: Hint | None = None
    """Its change hint when its runs were last listed (or when it was first recorded)."""
    listed: bool = True
    """Its runs have been listed (and recorded) at least once."""
    since: datetime | None = None
    """Never listed: its runs that changed after this are news (None: none of its history)."""
    recorded_at: datetime | None = None
    """When the source first recorded it (read back only; written once, with the agent)."""


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
    failing: bool
    since: datetime | None = None
    last_error: str | None = None
    pending: bool = False
    """Failing for less than its `source_failed_after`: `source.failed` not said (yet)."""


@dataclass(frozen=True, slots=True)
class Counters:
    """How many statements changed the file since it was opened (the benchmarks read this)."""

    transactions: int
    rows: int


class Store(OutboxQueries, RuleQueries, EventQueries, NoiseQueries):
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._db = conn
        self.path = path
        self.identity: statefile.FileIdentity | None = None
        self._own_files: list[statefile.FileIdentity] = []
        self._transactions = 0
        self._rows = 0

    @classmethod
    def open(cls, path: Path | str, *, readonly: bool = False) -> Store:
        """Open the state file (creating it, mode 0600) and bring its schema up to date; with
        `readonly`, only read an existing one. Raises `StateFileError` — one line naming the
        path — for a file that is damaged, newer, unreadable or in a missing directory; a
        failed open never modifies the file."""
        path = Path(path)
        if str(path) == ":memory:":
            conn = sqlite3.connect(":memory:", isolation_level=None)
            conn.execute("PRAGMA foreign_keys=ON")
            store = cls(conn, path)
        else:
            conn = statefile.connect(path, schema_version=SCHEMA_VERSION, readonly=readonly)
            store = cls(conn, path)
        if not readonly:
            try:
                store._migrate()
            except sqlite3.DatabaseError as err:
                conn.close()
                raise statefile.damaged(path, err) from None
            store._remember_files()
        return store

    def _remember_files(self) -> None:
        """Which files on disk are this connection's (after a write: the -wal and -shm exist)."""
        if str(self.path) != ":memory:":
            self.identity = statefile.FileIdentity.of(self.path)
            self._own_files = statefile.side_files(self.path)

    def close(self, *, checkpoint: bool = True) -> None:
        """Checkpoint the WAL into the main file and close. A checkpoint that cannot be made
        (a full disk) is skipped: the WAL is kept and replayed by the next start. Without
        `checkpoint` (a short write beside a running daemon) the WAL is left to the daemon."""
        try:
            if checkpoint:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        finally:
            self._db.close()

    def replaced(self) -> bool:
        """Is the file at the state path no longer the one open (removed, or another file)?"""
        return self.identity is not None and not self.identity.still_there()

    def write_back(self, now: datetime) -> Path | None:
        """Write the open database to the state path again and continue on that file (after
        `replaced()`). Returns where a different file found at the path was moved, if any.
        On failure the store is unusable: the caller stops."""
        aside = statefile.write_back(self._db, self.path, own=self._own_files, now=now)
        self._db = statefile.connect(self.path, schema_version=SCHEMA_VERSION)
        self._migrate()
        self._remember_files()
        return aside

    def _migrate(self) -> None:
        with self._tx() as db:
            migrate(db)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._transactions += 1

    # --- runs and agents -------------------------------------------------------------------

    def load_runs(self, source: str) -> dict[str, dict[str, RunState]]:
        """Everything the diff engine needs for one source: agent → run → state."""
        out: dict[str, dict[str, RunState]] = {}
        for agent_id in self.listed_agents(source):
            out[agent_id] = {}
        rows = self._db.execute(
            "SELECT agent_id, run_id, status, status_code, phase, outcome, attempt, digest "
            "FROM runs WHERE source = ?",
            (source,),
        )
        for agent_id, run_id, status, code, phase, outcome, attempt, digest in rows:
            out.setdefault(agent_id, {})[run_id] = RunState(
                status=status,
                status_code=code,
                phase=Phase(phase),
                outcome=Outcome(outcome) if outcome else None,
                attempt=attempt,
                digest=digest,
            )
        return out

    def finishes(self, source: str) -> list[Finish]:
        """Every finished run of the source — (agent id, outcome, ended at, duration, records)
        — in the order they ended (those without an end time first): what
        `standing.standings` folds."""
        rows = self._db.execute(
            "SELECT agent_id, outcome, json_extract(snapshot, '$.ended_at') AS ended, "
            "json_extract(snapshot, '$.duration_s'), json_extract(snapshot, '$.counts.records') "
            "FROM runs WHERE source = ? AND outcome IS NOT NULL "
            "ORDER BY ended IS NOT NULL, ended, first_seen",
            (source,),
        )
        return [(a, o, parse_iso(e), d, r) for a, o, e, d, r in rows]

    def listings(self, source: str) -> dict[str, bytes]:
        """The hash of each agent's last committed listing body (see `Fingerprints`)."""
        rows = self._db.execute("SELECT key, digest FROM listings WHERE source = ?", (source,))
        return dict(rows.fetchall())

    def known_agents(self, source: str) -> set[str]:
        rows = self._db.execute("SELECT agent_id FROM agents WHERE source = ?", (source,))
        return {r[0] for r in rows}

    def listed_agents(self, source: str) -> set[str]:
        rows = self._db.execute(
            "SELECT agent_id FROM agents WHERE source = ? AND listed", (source,)
        )
        return {r[0] for r in rows}

    def load_agents(self, source: str) -> dict[str, AgentRecord]:
        """Every agent the source has recorded, listed or not."""
        rows = self._db.execute(
            "SELECT agent_id, name, hint, listed, since, baselined_at FROM agents WHERE source = ?",
            (source,),
        )
        return {
            agent_id: AgentRecord(
                agent_id, name, _hint(hint), bool(listed), parse_iso(since), parse_iso(recorded)
            )
            for agent_id, name, hint, listed, since, recorded in rows
        }

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

    def commit(
        self,
        *,
        source: str | None = None,
        changes: Sequence[Change] = (),
        agents: Sequence[AgentRecord] = (),
        events: Sequence[Event] = (),
        health: SourceHealth | None = None,
        listings: Mapping[str, bytes] | None = None,
        marks: SourceMarks | None = None,
        retries: Sequence[RetryRow] = (),
        targets: Targets | None = None,
        now: datetime,
        now_ts: float,
    ) -> list[Event]:
        """Write a poll's outcome atomically; return the events that were new (not replays).

        `targets[event.id]` names the sinks that must receive each event (the dispatcher
        decided, before the transaction); one outbox row is written per target. `agents` are
        written whole (new ones, or a changed hint). `listings` (the hashes of the listing
        bodies the changes came from) ride along with a write but never cause one; `marks` are
        written when given. Nothing to write → the file is not touched.
        """
        if not (changes or agents or events or health or marks or retries):
            return []
        stamp = iso(now)
        with self._tx() as db:
            rows = self._write_agents(db, source, agents, stamp)
            rows += self._write_runs(db, changes, stamp)
            rows += self._write_listings(db, source, listings)
            rows += self._write_health(db, source, health)
            rows += self._write_marks(db, source, marks)
            if retries:
                self._write_retries(db, retries)
            fresh = self._insert_events(db, events, targets if targets is not None else {}, now_ts)
            self._rows += rows + len(fresh)
        return fresh

    def _write_agents(
        self,
        db: sqlite3.Connection,
        source: str | None,
        agents: Sequence[AgentRecord],
        stamp: str | None,
    ) -> int:
        """Write agents whole (new ones, or a changed hint); a name once known is kept."""
        if not agents:
            return 0
        assert source is not None
        db.executemany(
            "INSERT INTO agents(source, agent_id, name, baselined_at, hint, listed, "
            "since) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(source, agent_id) DO UPDATE "
            "SET name=coalesce(excluded.name, name), hint=excluded.hint, "
            "listed=excluded.listed, since=excluded.since",
            [_agent_row(source, a, stamp) for a in agents],
        )
        return len(agents)

    def _write_runs(
        self, db: sqlite3.Connection, changes: Sequence[Change], stamp: str | None
    ) -> int:
        """Write each changed run's snapshot and state (first seen: when it was inserted)."""
        if not changes:
            return 0
        db.executemany(
            "INSERT INTO runs(source, agent_id, run_id, status, status_code, phase, "
            "outcome, attempt, digest, snapshot, first_seen, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(source, agent_id, run_id) DO UPDATE SET "
            "status=excluded.status, status_code=excluded.status_code, "
            "phase=excluded.phase, outcome=excluded.outcome, attempt=excluded.attempt, "
            "digest=excluded.digest, snapshot=excluded.snapshot, "
            "updated_at=excluded.updated_at",
            (_run_row(c, stamp) for c in changes),  # streamed: no list of 200k rows
        )
        return len(changes)

    def _write_listings(
        self, db: sqlite3.Connection, source: str | None, listings: Mapping[str, bytes] | None
    ) -> int:
        """Write the hashes of the listing bodies the changes came from."""
        if not listings:
            return 0
        assert source is not None
        db.executemany(
            "INSERT INTO listings(source, key, digest) VALUES (?, ?, ?) "
            "ON CONFLICT(source, key) DO UPDATE SET digest=excluded.digest",
            [(source, key, digest) for key, digest in listings.items()],
        )
        return len(listings)

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

    def prune_runs(self, source: str, keep: int) -> int:
        """Forget finished runs beyond the newest `keep` of each agent.

        Listings are the newest N runs of an agent, so a run that many places down can never
        appear in a listing again: forgetting it cannot turn it into a "new" run later.
        """
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM runs WHERE phase = 'finished' AND (source, agent_id, run_id) IN ("
                "SELECT source, agent_id, run_id FROM (SELECT source, agent_id, run_id, "
                "ROW_NUMBER() OVER (PARTITION BY agent_id ORDER BY first_seen DESC, "
                "CAST(run_id AS INTEGER) DESC, run_id DESC) AS rn FROM runs WHERE source = ?) "
                "WHERE rn > ?)",
                (source, keep),
            )
            self._rows += cur.rowcount
        return cur.rowcount

    # --- reading, for `watcher status` and tests --------------------------------------------

    def latest_runs(self, source: str | None = None) -> list[RunSnapshot]:
        """The newest run of every agent (latest first sight, then highest id)."""
        sql = (
            "SELECT snapshot FROM (SELECT source, snapshot, ROW_NUMBER() OVER ("
            "PARTITION BY source, agent_id ORDER BY first_seen DESC, "
            "CAST(run_id AS INTEGER) DESC, run_id DESC) AS rn FROM runs) WHERE rn = 1"
        )
        args: tuple[object, ...] = ()
        if source is not None:
            sql += " AND source = ?"
            args = (source,)
        snaps = [RunSnapshot.from_dict(json.loads(row[0])) for row in self._db.execute(sql, args)]
        return sorted(snaps, key=lambda s: (s.source, s.agent_id))

    def agents(self) -> list[tuple[str, str, str | None]]:
        return list(self._db.execute("SELECT source, agent_id, name FROM agents ORDER BY 1, 2"))

    def run_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def events(self, *, type: str | None = None) -> list[Event]:
        sql, args = "SELECT body FROM events", tuple[str, ...]()
        if type:
            sql, args = sql + " WHERE type = ?", (type,)
        return [
            Event.from_dict(json.loads(r[0])) for r in self._db.execute(sql + " ORDER BY seq", args)
        ]

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    @property
    def counters(self) -> Counters:
        return Counters(self._transactions, self._rows)


def _hint(text: str | None) -> Hint | None:
    if not text:
        return None
    status, last_activity = json.loads(text)
    return Hint(status, parse_iso(last_activity))


def _agent_row(source: str, a: AgentRecord, stamp: str | None) -> tuple[object, ...]:
    hint = None if a.hint is None else json.dumps([a.hint.status, iso(a.hint.last_activity)])
    return (source, a.id, a.name, stamp, hint, int(a.listed), iso(a.since))


def _run_row(change: Change, stamp: str | None) -> tuple[object, ...]:
    s, st = change.snapshot, change.state
    return (
        s.source,
        s.agent_id,
        s.run_id,
        st.status,
        st.status_code,
        str(st.phase),
        str(st.outcome) if st.outcome else None,
        st.attempt,
        st.digest,
        s.as_json(),
        stamp,
        stamp,
    )
