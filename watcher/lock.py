"""One writer per state file: an exclusive lease that the daemon and `watcher once` hold for
the life of the process.

`Lease` is the interface — acquire, still held, release — so that a shared store can later
implement the same three calls as a lease in that store. `FileLease` is today's: an advisory
`flock` on a lock file beside the state file (`state.db.lock`), with the holder's pid written
into it so that the refusal can name it. The kernel drops the lock when the process dies, so
`kill -9` never leaves a stale lock behind.

A lock file can be deleted while it is held (`rm state.db*` by a cleanup script): the lock is
then on a file nobody else can open, and a second process could take a new one. `held()` notices
(the path names another file, or none) and takes the lock again on a new file — or reports that
another process already has.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Protocol

from watcher.errors import WatcherError


class StateInUse(WatcherError):
    """Another process holds the lease on the state file."""

    def __init__(self, state_path: Path, pid: int | None) -> None:
        holder = f" (pid {pid})" if pid else ""
        super().__init__(f"state file {state_path} is in use by another watcher{holder}")
        self.pid = pid


class Lease(Protocol):
    """The right to write one state file, held by one process at a time."""

    def acquire(self) -> None:
        """Take the lease; raise `StateInUse` if another process holds it."""

    def held(self) -> bool:
        """Is the lease still ours? (Takes it again if its lock file was removed.)"""

    def release(self) -> None:
        """Give the lease up. Safe to call when it is not held."""


def lock_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".lock")


class FileLease:
    """`Lease` as an advisory `flock` on `<state_path>.lock` holding the holder's pid."""

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.path = lock_path(state_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateInUse(self.state_path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def held(self) -> bool:
        if self._fd is None:
            return False
        if _same_file(self._fd, self.path):
            return True
        # Our lock file was removed or replaced: our lock guards nothing any more.
        old, self._fd = self._fd, None
        os.close(old)
        try:
            self.acquire()
        except StateInUse:
            return False
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if _same_file(fd, self.path):
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor drops the flock


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
