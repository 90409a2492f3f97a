"""The runs half of the state file: each source's agents, their runs, and the hash of the
listing each agent's runs came from.

- `runs`: the last snapshot of every run, with the `RunState` the diff engine compares the next
  listing with (`load_runs`); finished runs beyond the newest of each agent are pruned.
- `agents`: the agents each source has recorded (`AgentRecord`): its change hint, whether its
  runs were ever listed, and from when they are news if not.
- `listings`: a hash of the last listing body whose meaning each agent's runs hold, so that an
  identical listing after a restart is recognised without being parsed.

`Store` provides the connection and the transactions; `Store.commit` writes these tables with
the `_write_*` steps, in the same transaction as the events the changes cause.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from watcher.codec import iso, parse_iso
from watcher.diff import Change
from watcher.runs import Hint, Outcome, Phase, RunSnapshot, RunState
from watcher.standing import Finish


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


class RunQueries:
    """The run-side queries of `Store`."""

    _db: sqlite3.Connection
    _rows: int

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

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
