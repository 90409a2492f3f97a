"""The outbox half of the state file: undelivered (event, target) rows and their retries.

`_insert_events` records events with one row per target that must receive each, within the
caller's transaction: a poll's (`Store.commit`), a sink's report (`delivered`), noise control's
verdict (`record_verdict`). The dispatcher reads and settles the rows through these methods. A
row is deleted only once its target delivered the event (or gave it up), so a crash repeats at
most the delivery in flight.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from watcher.codec import iso
from watcher.events import Event

Targets = Mapping[str, Sequence[str]]
"""Event id → the outbox targets (sinks) that must receive it, decided by the dispatcher."""


@dataclass(frozen=True, slots=True)
class Pending:
    """One undelivered (event, target) pair from the outbox."""

    seq: int
    target: str
    event: Event
    attempts: int
    first_at: float
    held: str | None = None
    """Why the row was held (muted, flapping), if it was: its release goes as one digest."""


@dataclass(frozen=True, slots=True)
class OutboxTarget:
    """The undelivered rows of one target: how many, since when, how often tried, why not."""

    target: str
    depth: int
    oldest: float
    attempts: int
    last_error: str | None


class OutboxQueries:
    """The outbox methods of `Store` (which provides the connection and transactions)."""

    _db: sqlite3.Connection
    _rows: int

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _insert_events(
        self, db: sqlite3.Connection, events: Sequence[Event], targets: Targets, now_ts: float
    ) -> list[Event]:
        """Insert `events` and their outbox rows (within the caller's transaction); return
        those that were new, not replays of events already recorded."""
        fresh: list[Event] = []
        for event in events:
            cur = db.execute(
                "INSERT OR IGNORE INTO events(id, type, ts, body) VALUES (?, ?, ?, ?)",
                (event.id, event.type, iso(event.ts), json.dumps(event.to_dict())),
            )
            if cur.rowcount == 0:
                continue  # a replay of an event already recorded
            fresh.append(event)
            names = targets.get(event.id, ())
            if names:
                db.executemany(
                    "INSERT OR IGNORE INTO outbox(event_seq, target, first_at, next_at) "
                    "VALUES (?, ?, ?, ?)",
                    [(cur.lastrowid, t, now_ts, now_ts) for t in names],
                )
                self._rows += len(names)
        return fresh

    def due(
        self, now_ts: float, *, limit: int = 500, targets: Iterable[str] | None = None
    ) -> list[Pending]:
        """Undelivered (event, target) pairs whose next attempt is due, oldest event first."""
        sql = (
            "SELECT o.event_seq, o.target, o.attempts, o.first_at, e.body, o.held FROM outbox o "
            "JOIN events e ON e.seq = o.event_seq WHERE o.next_at <= ?"
        )
        args: list[object] = [now_ts]
        if targets is not None:
            names = list(targets)
            sql += f" AND o.target IN ({','.join('?' * len(names))})"
            args.extend(names)
        sql += " ORDER BY o.event_seq LIMIT ?"
        args.append(limit)
        return [
            Pending(seq, target, Event.from_dict(json.loads(body)), attempts, first_at, held)
            for seq, target, attempts, first_at, body, held in self._db.execute(sql, args)
        ]

    def next_due(self, targets: Iterable[str] | None = None) -> float | None:
        """When the next delivery attempt falls due, among `targets` (None: every target).
        Rows of a target that no sink serves any more (a channel removed from the config)
        wait without counting, so they cannot keep the dispatcher awake."""
        sql, args = "SELECT MIN(next_at) FROM outbox", []
        if targets is not None:
            args = list(targets)
            sql += f" WHERE target IN ({','.join('?' * len(args))})"
        row = self._db.execute(sql, args).fetchone()
        return row[0] if row else None

    def delivered(
        self,
        items: Sequence[Pending],
        produced: Sequence[Event] = (),
        targets: Targets | None = None,
        now_ts: float = 0.0,
    ) -> list[Event]:
        """Remove delivered rows — called only after the sink succeeded — and record what the
        sink produced about them (to `targets`), in one transaction. Returns the produced
        events that were new."""
        if not items and not produced:
            return []
        with self._tx() as db:
            db.executemany(
                "DELETE FROM outbox WHERE event_seq = ? AND target = ?",
                [(p.seq, p.target) for p in items],
            )
            self._rows += len(items)
            fresh = self._insert_events(
                db, produced, targets if targets is not None else {}, now_ts
            )
            self._rows += len(fresh)
        return fresh

    def retry_later(
        self, items: Sequence[Pending], *, error: str, next_at: Callable[[Pending], float]
    ) -> None:
        if not items:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? "
                "WHERE event_seq = ? AND target = ?",
                [(next_at(p), error, p.seq, p.target) for p in items],
            )
            self._rows += len(items)

    def give_up(
        self,
        items: Sequence[Pending],
        produced: Sequence[Event] = (),
        targets: Targets | None = None,
        now_ts: float = 0.0,
    ) -> list[Event]:
        """Remove rows that will never be delivered, recording why (`produced`)."""
        return self.delivered(items, produced, targets, now_ts)

    def orphans(self, served: Iterable[str]) -> list[Pending]:
        """Undelivered rows of targets not in `served` (sinks removed from the config)."""
        names = list(served)
        marks = ",".join("?" * len(names))
        sql = (
            "SELECT o.event_seq, o.target, o.attempts, o.first_at, e.body FROM outbox o "
            f"JOIN events e ON e.seq = o.event_seq WHERE o.target NOT IN ({marks}) "
            "ORDER BY o.event_seq"
        )
        return [
            Pending(seq, target, Event.from_dict(json.loads(body)), attempts, first_at)
            for seq, target, attempts, first_at, body in self._db.execute(sql, names)
        ]

    def outbox_by_target(self) -> list[OutboxTarget]:
        """What waits in the outbox, per target (for `watcher status`)."""
        rows = self._db.execute(
            "SELECT target, COUNT(*), MIN(first_at), MAX(attempts), "
            "(SELECT last_error FROM outbox i WHERE i.target = o.target AND last_error IS NOT NULL "
            "ORDER BY next_at DESC LIMIT 1) FROM outbox o GROUP BY target ORDER BY target"
        )
        return [OutboxTarget(*row) for row in rows]

    def outbox_depth(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def oldest_pending(self) -> float | None:
        oldest = self._db.execute("SELECT MIN(first_at) FROM outbox").fetchone()[0]
        return None if oldest is None else float(oldest)

    def prune_events(self, older_than: datetime) -> int:
        """Forget delivered events older than `older_than` (their ids stop deduplicating)."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM events WHERE ts < ? AND seq NOT IN (SELECT event_seq FROM outbox)",
                (iso(older_than),),
            )
            self._rows += cur.rowcount
        return cur.rowcount
