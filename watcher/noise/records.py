"""The noise-control half of the state file: silences, what each channel last said about each
agent, and the outbox rows it holds.

- `silences`: written by the daemon's HTTP API and by `watcher silence` — the latter from
  another process, without the daemon's lease (see `watcher.noise.cli`). The gate reads them
  again only when the file changed under it (`silences_version`: SQLite's `data_version`,
  which moves when another connection commits, and a count of this connection's own writes).
- `alert_marks`: per (channel, source, agent) the failure streak it last alerted (when, at how
  many failures, which event) and since when it holds the agent's alerts as flapping.
- `outbox.held`: why a row waits (muted, flapping); the gate moves its `next_at` to when the
  hold may end.

`record_verdict` writes one delivery pass's decisions — suppressed rows removed together with
their `notification.suppressed` events, rows held, marks — in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from watcher.codec import iso, parse_iso
from watcher.events import Event
from watcher.noise.silences import Silence, SilenceError
from watcher.outbox import Pending

NOISE_SCHEMA = """
CREATE TABLE IF NOT EXISTS silences (
    id         TEXT PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_at  TEXT NOT NULL,
    ends_at    TEXT NOT NULL,
    comment    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_marks (
    target   TEXT NOT NULL,
    source   TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    streak   TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    alerted  REAL,
    event_id TEXT,
    flapping REAL,
    PRIMARY KEY (target, source, agent_id)
) WITHOUT ROWID;
"""
"""The tables of noise control, part of the state file's schema since version 3 (`schema`)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

AgentKey = tuple[str, str]
"""(source, agent id)."""


@dataclass(frozen=True, slots=True)
class Mark:
    """What one channel last said about one agent."""

    streak: str | None = None
    """`failing_since` of the failure streak it alerted (None: none, or not known)."""
    failures: int = 0
    """The failures in a row when it last alerted that streak."""
    alerted: float | None = None
    """When it last alerted that streak (Unix time; `repeat` counts from here)."""
    event_id: str | None = None
    """The event of that alert (a retried delivery of it is the same alert, not a repeat)."""
    flapping: float | None = None
    """Since when it holds the agent's alerts as flapping (None: it does not)."""

    @property
    def empty(self) -> bool:
        return self.alerted is None and self.flapping is None


@dataclass(frozen=True, slots=True)
class Hold:
    """An outbox row to hold: until when (Unix time), and why."""

    item: Pending
    until: float
    reason: str


@dataclass(frozen=True, slots=True)
class HeldRows:
    """The rows a channel holds for one reason (for `watcher status` and the metrics)."""

    target: str
    reason: str
    count: int
    until: float


class NoiseQueries:
    """The noise-control methods of `Store` (which provides the connection and transactions)."""

    _db: sqlite3.Connection
    _rows: int
    _silence_writes = 0

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _insert_events(
        self,
        db: sqlite3.Connection,
        events: Sequence[Event],
        targets: Mapping[str, Sequence[str]],
        now_ts: float,
    ) -> list[Event]:
        raise NotImplementedError

    # --- silences --------------------------------------------------------------------------

    def add_silence(self, silence: Silence) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO silences(id, matchers, starts_at, ends_at, comment, created_by, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    silence.id,
                    json.dumps(dict(silence.matchers), sort_keys=True),
                    iso(silence.starts_at),
                    iso(silence.ends_at),
                    silence.comment,
                    silence.created_by,
                    iso(silence.created_at),
                ),
            )
        self._silence_writes += 1

    def expire_silence(self, wanted: str, now: datetime) -> Silence | None:
        """End the silence whose id is `wanted` (or starts with it, eight characters at least)
        now; one already over is left as it is. None when there is no such silence."""
        found = self.find_silence(wanted)
        if found is None or found.ends_at <= now:
            return found
        with self._tx() as db:
            db.execute("UPDATE silences SET ends_at = ? WHERE id = ?", (iso(now), found.id))
        self._silence_writes += 1
        return self.find_silence(found.id)

    def find_silence(self, wanted: str) -> Silence | None:
        """The silence with the id `wanted`, or the one id starting with it (at least eight
        characters, as `watcher silence list` shows them); raises `SilenceError` when several
        ids start with it."""
        rows = self._silence_rows("WHERE id = ?", (wanted,))
        if not rows and len(wanted) >= 8:
            rows = self._silence_rows("WHERE id LIKE ? ESCAPE '\\'", (_prefix(wanted),))
        if len(rows) > 1:
            raise SilenceError("id", f"{wanted} names {len(rows)} silences; give more of it")
        return rows[0] if rows else None

    def silences(self, *, ending_after: datetime | None = None) -> list[Silence]:
        """Every silence kept (those ending after `ending_after`), the newest first."""
        if ending_after is None:
            return self._silence_rows("", ())
        return self._silence_rows("WHERE ends_at > ?", (iso(ending_after),))

    def silences_version(self) -> tuple[int, int]:
        """Changes when the silences may have changed: another connection committed (SQLite's
        `data_version`), or this one wrote a silence."""
        return self._db.execute("PRAGMA data_version").fetchone()[0], self._silence_writes

    def prune_silences(self, ended_before: datetime) -> int:
        """Forget silences that ended before `ended_before`."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM silences WHERE ends_at < ?", (iso(ended_before),))
            self._rows += cur.rowcount
        if cur.rowcount:
            self._silence_writes += 1
        return cur.rowcount

    def _silence_rows(self, where: str, args: tuple[object, ...]) -> list[Silence]:
        sql = (
            "SELECT id, matchers, starts_at, ends_at, comment, created_by, created_at "
            f"FROM silences {where} ORDER BY created_at DESC, id"
        )
        with _tolerating_an_old_file():
            return [
                Silence(
                    id=row[0],
                    matchers=json.loads(row[1]),
                    starts_at=_time(row[2]),
                    ends_at=_time(row[3]),
                    comment=row[4],
                    created_by=row[5],
                    created_at=_time(row[6]),
                )
                for row in self._db.execute(sql, args)
            ]
        return []

    # --- what each channel said about each agent ---------------------------------------------

    def mark(self, target: str, key: AgentKey) -> Mark | None:
        row = self._db.execute(
            "SELECT streak, failures, alerted, event_id, flapping FROM alert_marks "
            "WHERE target = ? AND source = ? AND agent_id = ?",
            (target, *key),
        ).fetchone()
        return Mark(*row) if row is not None else None

    def finishes_of(self, key: AgentKey) -> list[tuple[datetime, str]]:
        """The agent's finished runs that succeeded or failed, (ended at, outcome), in the
        order they ended (when the platform gave no end, when watcher saw it)."""
        rows = self._db.execute(
            "SELECT coalesce(json_extract(snapshot, '$.ended_at'), updated_at), first_seen, "
            "outcome FROM runs WHERE source = ? AND agent_id = ? "
            "AND outcome IN ('success', 'failure')",
            key,
        )
        found = [(parse_iso(ended), parse_iso(seen), outcome) for ended, seen, outcome in rows]
        found.sort(key=lambda f: (f[0] or f[1] or _EPOCH, f[1] or _EPOCH))  # ties: as seen
        return [(ended or seen or _EPOCH, outcome) for ended, seen, outcome in found]

    def record_verdict(
        self,
        *,
        drop: Sequence[Pending],
        produced: Sequence[Event],
        targets: Mapping[str, Sequence[str]],
        hold: Sequence[Hold],
        marks: Mapping[tuple[str, AgentKey], Mark | None],
        now_ts: float,
    ) -> list[Event]:
        """One delivery pass's decisions, in one transaction: suppressed rows leave the outbox
        with the events that say so (`produced`, to `targets`), held rows wait (their retry
        clock starts again when they are released), marks are written (None: forgotten).
        Returns the produced events that were new."""
        with self._tx() as db:
            db.executemany(
                "DELETE FROM outbox WHERE event_seq = ? AND target = ?",
                [(p.seq, p.target) for p in drop],
            )
            fresh = self._insert_events(db, produced, targets, now_ts)
            db.executemany(
                "UPDATE outbox SET next_at = ?, first_at = ?, held = ? "
                "WHERE event_seq = ? AND target = ?",
                [(h.until, h.until, h.reason, h.item.seq, h.item.target) for h in hold],
            )
            for (target, key), mark in marks.items():
                _write_mark(db, target, key, mark)
            self._rows += len(drop) + len(fresh) + len(hold) + len(marks)
        return fresh

    def release_held(self, target: str, now_ts: float) -> int:
        """Make the held rows of `target` due now, to be decided again (its rules changed).
        Nothing held: nothing written."""
        where = "WHERE target = ? AND held IS NOT NULL AND next_at > ?"
        if not self._db.execute(f"SELECT EXISTS (SELECT 1 FROM outbox {where})",
                                (target, now_ts)).fetchone()[0]:  # fmt: skip
            return 0
        with self._tx() as db:
            cur = db.execute(f"UPDATE outbox SET next_at = ? {where}", (now_ts, target, now_ts))
            self._rows += cur.rowcount
        return cur.rowcount

    def held(self) -> list[HeldRows]:
        """The rows each channel holds, by reason, and when the last of them may go."""
        with _tolerating_an_old_file():
            rows = self._db.execute(
                "SELECT target, held, COUNT(*), MAX(next_at) FROM outbox "
                "WHERE held IS NOT NULL GROUP BY target, held ORDER BY target, held"
            )
            return [HeldRows(*row) for row in rows]
        return []


def _write_mark(db: sqlite3.Connection, target: str, key: AgentKey, mark: Mark | None) -> None:
    if mark is None or mark.empty:
        db.execute(
            "DELETE FROM alert_marks WHERE target = ? AND source = ? AND agent_id = ?",
            (target, *key),
        )
        return
    db.execute(
        "INSERT INTO alert_marks(target, source, agent_id, streak, failures, alerted, event_id, "
        "flapping) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(target, source, agent_id) DO "
        "UPDATE SET streak=excluded.streak, failures=excluded.failures, "
        "alerted=excluded.alerted, event_id=excluded.event_id, flapping=excluded.flapping",
        (target, *key, mark.streak, mark.failures, mark.alerted, mark.event_id, mark.flapping),
    )


@contextmanager
def _tolerating_an_old_file() -> Iterator[None]:
    """`watcher status` reads a state file read-only, as it is: one from before silences has
    none of their tables, which reads as nothing there."""
    try:
        yield
    except sqlite3.OperationalError as err:
        if "no such" not in str(err):
            raise


def _prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _time(text: str) -> datetime:
    parsed = parse_iso(text)
    assert parsed is not None, text
    return parsed
