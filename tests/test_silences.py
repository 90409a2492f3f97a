"""Silences: what they match, how the state file keeps them (beside another connection, across
a schema upgrade), and what `watcher silence` and `watcher status` say of them."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.cli import main
from watcher.events import Event
from watcher.noise.silences import Silence, SilenceError, new_silence
from watcher.runs import Outcome
from watcher.schema import SCHEMA_VERSION
from watcher.store import Store

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def event(type: str = "run.finished", **fields: object) -> Event:
    base: dict = {"id": "e", "type": type, "ts": NOW, "source": "cloud",
                  "source_kind": "sequentum_cloud", "agent_id": "1596",
                  "agent_name": "Amazon-Prices", "outcome": Outcome.FAILURE}  # fmt: skip
    base.update(fields)
    return Event(**base)


def silence(**matchers: str) -> Silence:
    return new_silence(matchers=matchers, duration="1h", comment="why", created_by="me", now=NOW)


@pytest.mark.parametrize(
    ("matchers", "matched", "unmatched"),
    [
        ({"agent": "amazon-*"}, event(), event(agent_name="steam")),
        ({"agent": "1596"}, event(), event(agent_id="2537")),
        (
            {"agent": "AMAZON-PRICES"},
            event(),
            event(type="source.failed", agent_id=None, agent_name=None),
        ),
        ({"outcome": "failure"}, event(), event(outcome=Outcome.STOPPED)),
        ({"type": "run.*"}, event(type="run.stuck"), event(type="source.failed")),
        ({"source": "cloud", "type": "source.failed"}, event(type="source.failed"), event()),
        ({"source": "clo*"}, event(), event(source="acc")),
    ],
)
def test_every_matcher_must_match(matchers: dict, matched: Event, unmatched: Event) -> None:
    made = silence(**matchers)
    assert made.matches(matched) and not made.matches(unmatched)


def test_a_silence_is_pending_active_then_expired() -> None:
    made = new_silence(matchers={"agent": "x"}, duration="2h", starts_at="2026-11-23T13:00:00",
                       comment="  planned\nwork ", created_by="alice", now=NOW)  # fmt: skip
    assert made.comment == "planned work"
    assert [made.state(NOW + timedelta(hours=h)) for h in (0, 1, 2.5, 3)] == [
        "pending",
        "active",
        "active",
        "expired",
    ]


def test_the_state_file_keeps_silences_and_says_when_another_process_wrote_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    daemon, other = Store.open(path), Store.open(path)
    try:
        seen = daemon.silences_version()
        made = silence(agent="amazon-*", outcome="failure")
        other.add_silence(made)  # `watcher silence add`, beside the daemon's connection
        assert daemon.silences_version() != seen
        assert daemon.silences() == [made]
        for suffix in ("1", "2"):
            other.add_silence(replace(made, id=f"abcdef01-{suffix}"))
        assert daemon.find_silence("abcdef01-2") == replace(made, id="abcdef01-2")
        with pytest.raises(SilenceError, match="abcdef01 names 2 silences; give more of it"):
            daemon.find_silence("abcdef01")
        assert daemon.find_silence("abcdef0") is None  # a prefix is 8 characters at least
    finally:
        daemon.close()
        other.close()


def test_expiring_ends_a_silence_now_and_pruning_forgets_it_later(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db")
    try:
        made = silence(agent="x")
        store.add_silence(made)
        later = NOW + timedelta(minutes=10)
        expired = store.expire_silence(made.id[:8], later)
        assert (
            expired is not None and expired.ends_at == later and expired.state(later) == "expired"
        )
        assert store.expire_silence("0" * 36, later) is None
        assert store.prune_silences(later) == 0  # kept, and listed, for a while
        assert store.prune_silences(later + timedelta(days=5, seconds=1)) == 1
        assert store.silences() == []
    finally:
        store.close()


def test_a_file_of_schema_2_is_migrated_with_its_outbox(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '2');
        CREATE TABLE sources (source TEXT PRIMARY KEY, failing INTEGER NOT NULL, since TEXT,
            last_error TEXT, last_success TEXT, cursor TEXT, budget TEXT);
        INSERT INTO sources VALUES ('cloud', 1, '2026-11-23T11:00:00Z', 'HTTP 503', NULL, NULL,
            NULL);
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL, ts TEXT NOT NULL, body TEXT NOT NULL);
        CREATE TABLE outbox (event_seq INTEGER NOT NULL, target TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, first_at REAL NOT NULL, next_at REAL NOT NULL,
            last_error TEXT, PRIMARY KEY (event_seq, target));
        """
    )
    body = event().to_dict()
    db.execute("INSERT INTO events(id, type, ts, body) VALUES ('e', 'run.finished', ?, ?)",
               (body["ts"], json.dumps(body)))  # fmt: skip
    db.execute("INSERT INTO outbox VALUES (1, 'notify:ops:x', 0, 1.0, 1.0, NULL)")
    db.commit()
    db.close()
    store = Store.open(path)
    try:
        health = store.source_health("cloud")
        assert health.failing and not health.pending  # its source.failed had been said
        [due] = store.due(2.0)
        assert (due.target, due.held) == ("notify:ops:x", None)
        assert store.silences() == [] and store.held() == []
        version = store._db.execute("SELECT value FROM meta WHERE key='schema_version'")
        assert version.fetchone()[0] == str(SCHEMA_VERSION) == "3"
    finally:
        store.close()


def config(tmp_path: Path) -> Path:
    path = tmp_path / "watcher.toml"
    path.write_text(
        f'[watcher]\nstate_path = "{tmp_path / "state.db"}"\nevents_path = ""\n'
        '[[sources]]\nname = "cloud"\nkind = "sequentum_cloud"\nbase_url = "http://127.0.0.1:9"\n'
        'api_key = "k-123456"\n'
    )
    return path


def test_silence_commands_and_the_status_section(tmp_path: Path, capsys) -> None:
    path = config(tmp_path)
    assert main(["-c", str(path), "silence", "list"]) == 0
    assert capsys.readouterr().out == "no silences\n"
    assert main(["-c", str(path), "silence", "add", "--agent", "amazon-*", "--type", "run.*",
                 "--for", "2h", "--comment", "new parser", "--by", "alice"]) == 0  # fmt: skip
    made = capsys.readouterr().out.strip()
    assert main(["-c", str(path), "silence", "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "STATE", "MATCHERS", "STARTS", "ENDS", "BY", "COMMENT"]
    assert row.startswith(f"{made}  active  agent=amazon-* type=run.*")
    assert row.endswith("alice  new parser")
    assert main(["-c", str(path), "status"]) == 0
    out = capsys.readouterr().out
    assert "1 silence(s) active or pending; 0 alert(s) held" in out
    assert f"{made}  active  agent=amazon-* type=run.*" in out
    assert main(["-c", str(path), "silence", "expire", made]) == 0
    assert capsys.readouterr().out == f"expired {made}\n"
    assert main(["-c", str(path), "silence", "list", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["state"]) == (made, "expired")
    assert main(["-c", str(path), "status"]) == 0
    assert "0 silence(s) active or pending; 0 alert(s) held" in capsys.readouterr().out
