"""The state file as one object: `Store` opens it, keeps its schema current and writes a
poll's outcome in one transaction.

The state file is one SQLite database (WAL) holding everything watcher must not forget.
`Store.commit` writes a poll's run changes, agents, listing hashes, source health and marks and
retries together with the events they cause and one outbox row per (event, target) that must
receive it: a crash at any point loses nothing, and a delivery removes its row only after it
succeeded, so it repeats at most the delivery in flight. Each part of the file has its queries
in a module of its own, mixed into `Store`:

- `watcher.runstore`: each source's agents, their runs and the hashes of their listings.
- `watcher.sourcestate`: whether each source is failing, and where it stands.
- `watcher.outbox`: events and their undelivered (event, target) rows.
- `watcher.history`: the recorded events, read back.
- `watcher.rulestore`: what the rules watch, expect and retry.
- `watcher.noise.records`: silences, what each channel last said, held rows.

`watcher.schema` holds the tables and their migrations; `watcher.statefile` the file on disk
(checked before it is opened, watched, written back). A commit with nothing in it does not touch
the file. All methods are synchronous and short; the daemon calls them from its event loop.
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
from watcher.codec import iso
from watcher.diff import Change
from watcher.events import Event
from watcher.history import EventQueries
from watcher.noise.records import NoiseQueries
from watcher.outbox import OutboxQueries, Targets
from watcher.rulestore import RetryRow, RuleQueries
from watcher.runstore import AgentRecord, RunQueries
from watcher.schema import SCHEMA_VERSION, migrate
from watcher.sourcestate import SourceHealth, SourceMarks, SourceQueries


@dataclass(frozen=True, slots=True)
class Counters:
    """How many statements changed the file since it was opened (the benchmarks read this)."""

    transactions: int
    rows: int


class Store(RunQueries, SourceQueries, OutboxQueries, RuleQueries, EventQueries, NoiseQueries):
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

    # --- reading, for tests and the benchmarks -------------------------------------------------

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
