"""The state file on disk: refused in one line when unusable (and left untouched), migrated,
read without side effects, written back when removed or replaced; one writer at a time."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from watcher.events import EventType, source_event
from watcher.lock import FileLease, StateInUse, lock_path
from watcher.schema import SCHEMA_VERSION
from watcher.sourcestate import SourceMarks
from watcher.statefile import StateFileError
from watcher.store import Store

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def a_state_file(path: Path, events: int = 50) -> None:
    store = Store.open(path)
    try:
        for i in range(events):
            event = source_event(EventType.SOURCE_FAILED, source="cloud", source_kind="x",
                                 ts=NOW, id_parts=(i,), message="x" * 2000)  # fmt: skip
            store.commit(events=[event], now=NOW, now_ts=NOW.timestamp())
    finally:
        store.close()


def refusal(path: Path) -> str:
    with pytest.raises(StateFileError) as caught:
        Store.open(path)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"watcher.state_path: {path}: ")
    return text.removeprefix(f"watcher.state_path: {path}: ")


def test_garbage_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is no database\n" * 100)
    before = digest(path)
    assert refusal(path) == (
        "not a watcher state file or damaged (sqlite: file is not a database); "
        "restore it or move it away"
    )
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def test_a_truncated_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    a_state_file(path)
    os.truncate(path, path.stat().st_size // 2)
    before = digest(path)
    assert refusal(path).startswith("not a watcher state file or damaged (sqlite: ")
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


def test_a_damaged_page_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    a_state_file(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\xff" * 4096  # a page in the middle
    path.write_bytes(bytes(data))
    before = digest(path)
    assert refusal(path).startswith("not a watcher state file or damaged (sqlite: ")
    assert digest(path) == before


def test_another_sqlite_database_is_not_taken_for_a_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER)")
    db.commit()
    db.close()
    assert refusal(path) == (
        "not a watcher state file or damaged (sqlite: no watcher tables); "
        "restore it or move it away"
    )


def test_a_newer_schema_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    a_state_file(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    before = digest(path)
    assert refusal(path) == (
        f"written by a newer watcher (state schema 99; this watcher reads up to "
        f"{SCHEMA_VERSION}); upgrade watcher or restore an older state file"
    )
    assert digest(path) == before


def test_a_missing_directory_is_named_not_created(tmp_path: Path) -> None:
    path = tmp_path / "not-mounted" / "state.db"
    assert refusal(path) == (
        f"directory {path.parent} does not exist; create it or set watcher.state_path elsewhere"
    )
    assert not path.parent.exists()


def test_a_directory_at_the_path_is_named(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()
    assert refusal(tmp_path / "state.db") == "is a directory, not a state file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file whatever its mode")
def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    a_state_file(path, events=1)
    path.chmod(0)
    assert refusal(path).startswith("permission denied")


def test_a_first_version_file_is_migrated_and_keeps_its_state(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE sources (source TEXT PRIMARY KEY, failing INTEGER NOT NULL,
                              since TEXT, last_error TEXT);
        INSERT INTO sources VALUES ('cloud', 1, '2026-11-23T11:00:00Z', 'HTTP 503');
        """
    )
    db.commit()
    db.close()
    store = Store.open(path)
    try:
        assert store.source_health("cloud").failing
        assert store.last_success("cloud") is None
        store.commit(source="cloud", marks=SourceMarks(NOW), now=NOW, now_ts=NOW.timestamp())
        assert store.last_success("cloud") == NOW
        assert store.source_health("cloud").failing  # the health row is untouched
    finally:
        store.close()
    assert Store.open(path, readonly=True).last_success("cloud") == NOW


def test_reading_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    a_state_file(path, events=1)
    before = digest(path)
    store = Store.open(path, readonly=True)
    assert store.outbox_depth() == 0
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]
    assert digest(path) == before
    with pytest.raises(StateFileError, match="no such file"):
        Store.open(tmp_path / "absent.db", readonly=True)


# --- written back --------------------------------------------------------------------------


def test_a_removed_file_is_written_back_with_everything_committed(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store.open(path)
    try:
        store.commit(source="cloud", marks=SourceMarks(NOW), now=NOW, now_ts=NOW.timestamp())
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        assert store.replaced()
        later = NOW.replace(hour=13)
        store.commit(source="cloud", marks=SourceMarks(later), now=later, now_ts=later.timestamp())
        assert store.write_back(NOW) is None
        assert not store.replaced()
        store.commit(source="other", marks=SourceMarks(NOW), now=NOW, now_ts=NOW.timestamp())
    finally:
        store.close()
    reopened = Store.open(path)
    assert (reopened.last_success("cloud"), reopened.last_success("other")) == (later, NOW)
    assert reopened.integrity_check() == "ok"
    reopened.close()


def test_a_replaced_file_is_moved_aside_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store.open(path)
    try:
        store.commit(source="cloud", marks=SourceMarks(NOW), now=NOW, now_ts=NOW.timestamp())
        other = tmp_path / "restored-from-backup.db"
        a_state_file(other, events=1)
        os.replace(other, path)
        assert store.replaced()
        aside = store.write_back(NOW)
        assert aside == tmp_path / "state.db.replaced-20261123T120000Z"
        assert Store.open(aside, readonly=True).events()  # the foreign file, intact
    finally:
        store.close()
    assert Store.open(path, readonly=True).last_success("cloud") == NOW


# --- one writer ----------------------------------------------------------------------------


def test_a_second_lease_is_refused_naming_the_holder(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from watcher.lock import FileLease
        FileLease(Path({str(state)!r})).acquire()
        print("held", flush=True)
        time.sleep(30)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(StateInUse) as caught:
            FileLease(state).acquire()
        assert str(caught.value) == (
            f"state file {state} is in use by another watcher (pid {holder.pid})"
        )
    finally:
        holder.kill()
        holder.wait()
    lease = FileLease(state)  # the kernel dropped the dead holder's lock
    lease.acquire()
    assert lease.held()
    lease.release()


def test_a_removed_lock_file_is_taken_again(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    lease = FileLease(state)
    lease.acquire()
    lock_path(state).unlink()
    assert lease.held()  # noticed, and a new lock file taken
    assert lock_path(state).read_text().strip() == str(os.getpid())
    with pytest.raises(StateInUse):
        FileLease(state).acquire()
    lease.release()


def test_a_lease_lost_to_another_process_is_reported(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    lease = FileLease(state)
    lease.acquire()
    lock_path(state).unlink()
    thief = FileLease(state)
    thief.acquire()  # another process could do this once the lock file is gone
    assert not lease.held()
    thief.release()
