"""The state file on disk: opened only once it is known to be sound, watched, written back.

- `connect` checks the file before anything writes to it — a missing directory, a permission
  problem, a file that is not SQLite, a damaged or truncated one, one written by a newer watcher
  — and raises `StateFileError`, one line that names the path and the config key. A failed start
  never modifies the file: the checks run on a read-only connection.
- `FileIdentity` remembers which file was opened, so that a state file removed or replaced
  while the daemon runs (a cleanup script, a volume remounted) is noticed.
- `write_back` writes the open database to the path again (`VACUUM INTO` a temporary file,
  fsync, rename), moving whatever else now stands at the path aside first.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from watcher.errors import WatcherError
from watcher.files import fsync_dir

CONFIG_KEY = "watcher.state_path"
_MAGIC = b"SQLite format 3\x00"
_SIDE_FILES = ("-wal", "-shm")


class StateFileError(WatcherError):
    """The state file cannot be used; the message names the config key and the path."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{CONFIG_KEY}: {path}: {problem}")
        self.path = path


def damaged(path: Path, err: BaseException) -> StateFileError:
    reason = " ".join(str(err).split()) or type(err).__name__
    return StateFileError(
        path, f"not a watcher state file or damaged (sqlite: {reason}); restore it or move it away"
    )


def connect(path: Path, *, schema_version: int, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the state file at `path`, after checking that it is sound and not newer
    than `schema_version`. Read-write (created, mode 0600, when absent) unless `readonly`."""
    if not readonly:
        check_directory(path)
    if path.exists():
        _check_file(path, schema_version)
    elif readonly:
        raise StateFileError(path, "no such file")
    try:
        if readonly:
            return _read_only(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn
    except PermissionError as err:
        raise StateFileError(path, f"permission denied ({err.strerror})") from None
    except OSError as err:
        raise StateFileError(path, f"cannot open: {err.strerror or err}") from None
    except sqlite3.DatabaseError as err:
        raise damaged(path, err) from None


def check_directory(path: Path) -> None:
    """The state file's directory must exist and be writable (it is never created: a missing
    directory is a mistyped path or a volume not mounted)."""
    parent = path.parent
    if not parent.is_dir():
        raise StateFileError(
            path, f"directory {parent} does not exist; create it or set {CONFIG_KEY} elsewhere"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StateFileError(path, f"directory {parent} is not writable by this user")


def _check_file(path: Path, schema_version: int) -> None:
    """Is the file at `path` a sound watcher state file this watcher can read? Read-only:
    first its header, then — on a read-only connection — its tables, version and pages."""
    if path.is_dir():
        raise StateFileError(path, "is a directory, not a state file")
    header, size = _read_header(path)
    if size == 0:
        return  # a new, empty file: SQLite makes a database of it
    _check_header(path, header, size)
    try:
        conn = _read_only(path)
    except sqlite3.DatabaseError as err:
        raise damaged(path, err) from None
    try:
        _check_contents(conn, path, schema_version)
    except sqlite3.DatabaseError as err:
        raise damaged(path, err) from None
    finally:
        conn.close()


def _read_header(path: Path) -> tuple[bytes, int]:
    """The file's first 100 bytes (SQLite's header) and its size."""
    try:
        with path.open("rb") as f:
            return f.read(100), os.fstat(f.fileno()).st_size
    except PermissionError as err:
        raise StateFileError(path, f"permission denied ({err.strerror})") from None
    except OSError as err:
        raise StateFileError(path, f"cannot read: {err.strerror or err}") from None


def _check_header(path: Path, header: bytes, size: int) -> None:
    """A SQLite database, and as long as its header says (not a truncated copy)?"""
    if not header.startswith(_MAGIC):
        raise damaged(path, sqlite3.DatabaseError("file is not a database"))
    if len(header) == 100 and _pages_missing(header, size):
        raise damaged(path, sqlite3.DatabaseError("file is shorter than its header says"))


def _check_contents(conn: sqlite3.Connection, path: Path, schema_version: int) -> None:
    """Watcher's tables (or no tables yet), a schema this watcher reads, sound pages."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and "meta" not in tables:
        raise damaged(path, sqlite3.DatabaseError("no watcher tables"))
    if "meta" in tables:
        _check_version(conn, path, schema_version)
    verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    if verdict != "ok":
        raise damaged(path, sqlite3.DatabaseError(str(verdict)))


def _check_version(conn: sqlite3.Connection, path: Path, schema_version: int) -> None:
    """The file names its schema version, and it is not newer than this watcher's."""
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    found = int(row[0]) if row and str(row[0]).isdigit() else None
    if found is None:
        raise damaged(path, sqlite3.DatabaseError("no schema version"))
    if found > schema_version:
        raise StateFileError(
            path,
            f"written by a newer watcher (state schema {found}; this watcher reads up "
            f"to {schema_version}); upgrade watcher or restore an older state file",
        )


def _pages_missing(header: bytes, size: int) -> bool:
    """Does the header promise more pages than the file holds (a truncated copy)?"""
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    (pages,) = struct.unpack(">I", header[28:32])
    change, valid_for = header[24:28], header[92:96]
    return change == valid_for and pages * page_size > size


def _read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. Without a WAL beside the file (no writer has it open) the file
    is opened immutable, so that reading creates no -wal or -shm file either."""
    uri = f"file:{quote(str(path))}?mode=ro"
    if not Path(str(path) + "-wal").exists():
        uri += "&immutable=1"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10.0)


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file a path named when the state file was opened (device and inode)."""

    path: Path
    device: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        st = os.stat(path)
        return cls(path, st.st_dev, st.st_ino)

    def still_there(self) -> bool:
        """Does `path` still name the file that was opened?"""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (self.device, self.inode)


def side_files(path: Path) -> list[FileIdentity]:
    """The -wal and -shm files beside `path` that exist now (a writer's own, right after it
    wrote), to tell them apart later from those of another database."""
    return [FileIdentity.of(side) for side in _sides(path) if side.exists()]


def write_back(
    conn: sqlite3.Connection,
    path: Path,
    *,
    own: list[FileIdentity],
    now: datetime | None = None,
) -> Path | None:
    """Write the database open on `conn` to `path` and close `conn`; the caller opens the file
    again. The copy is made in a temporary file beside `path` and renamed into place. A
    different file now at `path` is moved aside first, with the -wal and -shm files that are
    not `conn`'s own (`own`, from `side_files`); returns where it went, or None when nothing
    stood there.

    The order matters: SQLite deletes a WAL *by name* when its last connection closes, so
    `conn` is closed only once nothing of another database is left under those names."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    tmp = path.with_name(f".{path.name}.restore-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    conn.execute("VACUUM INTO ?", (str(tmp),))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    aside = path.with_name(f"{path.name}.replaced-{stamp}") if path.exists() else None
    if aside is not None:
        os.replace(path, aside)
    for side in _sides(path):
        if not side.exists():
            continue
        if aside is not None and not any(o.path == side and o.still_there() for o in own):
            os.replace(side, Path(str(aside) + side.name.removeprefix(path.name)))
        else:
            side.unlink()  # ours, or left by a file that is gone: nothing to keep
    conn.close()
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return aside


def _sides(path: Path) -> list[Path]:
    return [Path(str(path) + suffix) for suffix in _SIDE_FILES]
