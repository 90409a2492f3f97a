"""Extract an untrusted zip archive without letting it write anywhere it should not.

The ACC hands out run logs and backup data as zip files, and a zip names its own entries: an
entry called `../../etc/cron.d/x`, `/etc/passwd`, `C:\\x`, a symlink, or a 42 kB file that
inflates to petabytes must not hurt the machine. `extract_zip` therefore:

1. refuses the archive before writing anything when an entry is absolute, climbs out with `..`,
   is a symlink or another special file, is encrypted, or when the declared sizes break the
   limits (entry count, bytes per entry, total bytes, compression ratio);
2. inflates into a fresh staging directory beside the destination, counting the bytes actually
   produced (a header can lie), creating each file with O_EXCL | O_NOFOLLOW and checking that
   its resolved path stays inside the staging directory;
3. renames the staging directory into place only when everything was extracted; on any error
   it is removed, so a refused or interrupted extraction leaves no partial file at a final path.

Pure standard library, synchronous (call it in a thread from async code), no knowledge of ACC.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from watcher.files import fsync_dir

CHUNK = 64 * 1024
RATIO_GRACE = 1 << 20
"""Entries that stay below this many bytes never trip the ratio limit: small, repetitive files
(a log of identical lines) legitimately compress very well."""
MAX_COMPONENT_BYTES = 200
STAGING_PREFIX = ".watcher-extract-"

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafeArchive(Exception):
    """The archive was refused (hostile, over a limit, or not a readable zip); nothing of it
    was written. The message is one line naming the entry and the reason."""


@dataclass(frozen=True, slots=True)
class ZipLimits:
    """What one archive may do. Every limit counts bytes after decompression."""

    max_total_bytes: int = 4 << 30
    max_entries: int = 10_000
    max_ratio: float = 200.0
    """Largest decompressed/compressed size of one entry (beyond `RATIO_GRACE` bytes)."""
    max_entry_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Extracted:
    """One file written by `extract_zip`: its path relative to the destination (POSIX)."""

    name: str
    size: int
    sha256: str


def member_path(name: str) -> PurePosixPath:
    """The relative path an entry name stands for, or `UnsafeArchive` if it is absolute,
    climbs with `..`, or holds a NUL byte. Backslashes count as separators (Windows zips);
    control characters become "_"."""
    if "\x00" in name:
        raise UnsafeArchive(f"entry {_show(name)}: NUL byte in the name")
    text = name.replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        raise UnsafeArchive(f"entry {_show(name)}: absolute path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"entry {_show(name)}: path climbs out with '..'")
    cleaned = [_CONTROL.sub("_", p) for p in parts]
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES for p in cleaned):
        raise UnsafeArchive(f"entry {_show(name)}: a path component is too long")
    return PurePosixPath(*cleaned)


def extract_zip(archive: Path, dest: Path, limits: ZipLimits | None = None) -> list[Extracted]:
    """Extract `archive` into the directory `dest` (replaced if it exists) within `limits`.

    Returns the files written, in archive order. Raises `UnsafeArchive` when the archive is
    refused and `OSError` when the disk fails (full, read-only); either way nothing is left at
    `dest` that was not there before, and no staging directory remains.
    """
    limits = limits or ZipLimits()
    try:
        with zipfile.ZipFile(archive) as zf:
            plan = _plan(zf.infolist(), limits)
            budget = _Budget(limits.max_total_bytes)
            with _staging(dest) as stage:
                written = [_extract_one(zf, i, rel, stage, limits, budget) for i, rel in plan]
                fsync_dir(stage)
                _replace_dir(stage, dest)
    except zipfile.BadZipFile as err:
        raise UnsafeArchive(f"not a readable zip archive ({err})") from None
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError) as err:
        raise UnsafeArchive(f"unsupported zip archive ({err})") from None
    return [e for e in written if e is not None]


def _plan(
    infos: list[zipfile.ZipInfo], limits: ZipLimits
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Check every entry against the rules and the declared sizes against the limits, before
    anything is written; the entries with their relative paths."""
    if len(infos) > limits.max_entries:
        raise UnsafeArchive(f"archive: {len(infos)} entries, more than {limits.max_entries}")
    plan: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    declared = 0
    for info in infos:
        rel = member_path(info.filename)
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            raise UnsafeArchive(f"entry {_show(info.filename)}: symbolic link")
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchive(f"entry {_show(info.filename)}: not a regular file")
        if info.flag_bits & 0x1:
            raise UnsafeArchive(f"entry {_show(info.filename)}: encrypted")
        if not rel.parts:
            if info.is_dir():
                continue  # "./" or "/" as a directory: nothing to create
            raise UnsafeArchive(f"entry {_show(info.filename)}: empty file name")
        _check_size(info, info.file_size, limits)
        declared += info.file_size
        if declared > limits.max_total_bytes:
            raise UnsafeArchive(
                f"archive: declares more than {limits.max_total_bytes} bytes in total"
            )
        plan.append((info, rel))
    return plan


def _check_size(info: zipfile.ZipInfo, size: int, limits: ZipLimits) -> None:
    """Refuse an entry whose (declared or produced) size breaks the per-entry limits."""
    if limits.max_entry_bytes is not None and size > limits.max_entry_bytes:
        raise UnsafeArchive(
            f"entry {_show(info.filename)}: more than {limits.max_entry_bytes} bytes"
        )
    if size > RATIO_GRACE and size > limits.max_ratio * max(info.compress_size, 1):
        raise UnsafeArchive(
            f"entry {_show(info.filename)}: compression ratio above {limits.max_ratio:g} "
            "(a decompression bomb?)"
        )


class _Budget:
    """The bytes an archive may still produce, counted as they are inflated: zipfile stops at
    each entry's declared size, but the count does not rely on that."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.total:
            raise UnsafeArchive(f"archive: more than {self.total} bytes in total")


def _extract_one(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    rel: PurePosixPath,
    stage: Path,
    limits: ZipLimits,
    budget: _Budget,
) -> Extracted | None:
    """Inflate one entry to its place under `stage`; None for a directory entry."""
    target = stage.joinpath(*rel.parts)
    if not target.resolve().is_relative_to(stage.resolve()):  # defence in depth
        raise UnsafeArchive(f"entry {_show(info.filename)}: resolves outside the destination")
    try:
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(target, flags, 0o666)
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise UnsafeArchive(f"entry {_show(info.filename)}: duplicate or conflicting") from None
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:
            raise UnsafeArchive(f"entry {_show(info.filename)}: name too long") from None
        raise
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
        while chunk := src.read(CHUNK):
            size += len(chunk)
            _check_size(info, size, limits)
            budget.spend(len(chunk))
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return Extracted(rel.as_posix(), size, digest.hexdigest())


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    """A fresh directory beside `dest`, removed on the way out unless it was renamed."""
    stage = dest.parent / f"{STAGING_PREFIX}{secrets.token_hex(6)}"
    stage.mkdir()
    try:
        yield stage
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _replace_dir(stage: Path, dest: Path) -> None:
    """Put `stage` at `dest`. An existing `dest` (an earlier extraction) is moved aside first
    and removed after, so `dest` never holds a mix of old and new files."""
    old: Path | None = None
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        old = dest.parent / f"{STAGING_PREFIX}old-{secrets.token_hex(6)}"
        dest.rename(old)
    stage.rename(dest)
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _show(name: str) -> str:
    """An entry name fit for a one-line message: control characters escaped, length capped."""
    text = repr(name)
    return text if len(text) <= 120 else text[:119] + "…"


def clean_stale(parent: Path) -> None:
    """Remove staging directories a killed extraction left in `parent`."""
    for child in parent.glob(f"{STAGING_PREFIX}*"):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
