"""The state file's schema: its tables, its version, and how an older file is brought up to it.

Every start runs `migrate` in one transaction: each `CREATE … IF NOT EXISTS` adds what a file
lacks (a new file gets everything), then the columns later versions added to tables an older
file already has (`_COLUMNS_SINCE`), then the version is stamped. A file from a newer watcher
never gets here: `statefile.connect` refuses it, naming both versions.

The noise-control tables are declared beside their queries (`watcher.noise.records`); the
queries of every other table live with `Store` (`watcher.store` and the modules it mixes in).
"""

from __future__ import annotations

import sqlite3

from watcher.noise.records import NOISE_SCHEMA

SCHEMA_VERSION = 3
"""1: the first release. 2: per source the last successful poll (`since` for agents seen for
the first time), the sweep's place and the request budget's last minute; per agent its change
hint, whether its runs were ever listed, and from when they are news if not. 3: silences, what
each channel last said about each agent, why an outbox row is held, and whether a failing
source is still within its `source_failed_after`."""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    source       TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    name         TEXT,
    baselined_at TEXT NOT NULL,
    hint         TEXT,
    listed       INTEGER NOT NULL DEFAULT 1,
    since        TEXT,
    PRIMARY KEY (source, agent_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    source      TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    status      TEXT NOT NULL,
    status_code INTEGER,
    phase       TEXT NOT NULL,
    outcome     TEXT,
    attempt     INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    snapshot    TEXT NOT NULL,
    first_seen  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (source, agent_id, run_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS listings (
    source TEXT NOT NULL,
    key    TEXT NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sources (
    source       TEXT PRIMARY KEY,
    failing      INTEGER NOT NULL,
    since        TEXT,
    last_error   TEXT,
    last_success TEXT,
    cursor       TEXT,
    budget       TEXT,
    pending      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    id   TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    ts   TEXT NOT NULL,
    body TEXT NOT NULL
);
-- the status view reads the rules' findings that still hold by their type, every refresh
CREATE INDEX IF NOT EXISTS events_type ON events (type);
CREATE TABLE IF NOT EXISTS outbox (
    event_seq  INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
    target     TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    first_at   REAL NOT NULL,
    next_at    REAL NOT NULL,
    last_error TEXT,
    held       TEXT,
    PRIMARY KEY (event_seq, target)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at);
CREATE TABLE IF NOT EXISTS expected_starts (
    source   TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    at       TEXT NOT NULL,
    schedule TEXT NOT NULL,
    PRIMARY KEY (source, agent_id, at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retries (
    source     TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    try        INTEGER NOT NULL,
    due_at     REAL NOT NULL,
    state      TEXT NOT NULL,
    new_run_id TEXT,
    detail     TEXT,
    PRIMARY KEY (source, run_id, try)
) WITHOUT ROWID;
"""
    + NOISE_SCHEMA
)

_COLUMNS_SINCE: dict[int, tuple[tuple[str, str, str], ...]] = {
    2: (
        ("sources", "last_success", "TEXT"),
        ("sources", "cursor", "TEXT"),
        ("sources", "budget", "TEXT"),
        ("agents", "hint", "TEXT"),
        ("agents", "listed", "INTEGER NOT NULL DEFAULT 1"),
        ("agents", "since", "TEXT"),
    ),
    3: (
        ("sources", "pending", "INTEGER NOT NULL DEFAULT 0"),
        ("outbox", "held", "TEXT"),
    ),
}
"""The columns each version added to tables an older file already has: (table, column, type)."""


def migrate(db: sqlite3.Connection) -> None:
    """Bring the state file open on `db` up to `SCHEMA_VERSION`, within the caller's
    transaction (`Store._migrate`)."""
    for statement in filter(str.strip, _SCHEMA.split(";")):
        db.execute(statement)
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    found = int(row[0]) if row is not None else SCHEMA_VERSION
    for version in range(found + 1, SCHEMA_VERSION + 1):
        for table, column, kind in _COLUMNS_SINCE.get(version, ()):
            have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    db.execute(
        "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (str(SCHEMA_VERSION),),
    )
