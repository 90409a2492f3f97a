"""One run's output directory, DIR/SOURCE/AGENT_ID/RUN_ID/: safe names, the manifest, and
files that appear whole or not at all.

Everything a platform names is untrusted. A file name keeps only a safe last component
(`safe_name`); ids used as directories lose their separators (`safe_component`); and every
path is checked, after resolving symlinks, to lie inside the outputs directory before anything
is written there. A file is written to a temporary `.watcher-*.part` file in the same
directory, fsync'd, and renamed into place, so a crash or a full disk never leaves a partial
file at a final path; leftovers of a killed process are removed on the next fetch of the run.

`manifest.json` lists what is in place: per file its name, size, sha256, the platform's file id
and when it was fetched (and, for an extracted zip, what was extracted). It is rewritten the
same atomic way after each file, so a restart resumes where the last run stopped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from watcher import safezip
from watcher.files import fsync_dir

log = structlog.get_logger("watcher.outputs")

MANIFEST = "manifest.json"
PART_PREFIX = ".watcher-"
PART_SUFFIX = ".part"
MAX_NAME_BYTES = 200

_SEPARATORS = re.compile(r"[/\\]")


class UnsafePath(Exception):
    """A path would lie outside the outputs directory (a hostile name, or a symlink)."""


def _clean(text: str) -> str:
    """`text` without NUL and other control characters, trimmed, without leading dots."""
    kept = "".join(c for c in text if unicodedata.category(c) != "Cc")
    return kept.strip().lstrip(".").strip()


def _shorten(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """`name` cut to `limit` UTF-8 bytes, keeping a short extension."""
    if len(name.encode("utf-8", "surrogatepass")) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    room = limit - len(suffix.encode())
    cut = stem.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return cut + suffix


def safe_name(raw: str, fallback: str) -> str:
    """A file name fit for the run directory: the last component of `raw` (either separator),
    without control characters or leading dots, at most `MAX_NAME_BYTES`; `fallback` (say, the
    file id) when nothing usable is left. `../../evil` → `evil`, `/etc/passwd` → `passwd`."""
    last = _SEPARATORS.split(raw)[-1] if raw else ""
    name = _shorten(_clean(last))
    if name in ("", ".", ".."):
        name = _shorten(_clean(_SEPARATORS.sub("_", fallback))) or "file"
    return name


def safe_component(raw: str, fallback: str = "_") -> str:
    """An id (an ACC agent path, a run id) as one directory name: separators become "_"."""
    name = _shorten(_clean(_SEPARATORS.sub("_", raw)))
    return name if name not in ("", ".", "..") else fallback


def unique_names(wanted: Iterable[str], taken: Iterable[str]) -> list[str]:
    """`wanted` names made unique against `taken` and each other (case-insensitively, for
    file systems that are): "a.csv", "a.csv" → "a.csv", "a-2.csv"."""
    used = {t.lower() for t in taken}
    out = []
    for name in wanted:
        candidate, n = name, 1
        while candidate.lower() in used:
            n += 1
            stem, dot, ext = name.rpartition(".")
            candidate = f"{stem}-{n}.{ext}" if dot and stem else f"{name}-{n}"
        used.add(candidate.lower())
        out.append(candidate)
    return out


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One file in place, as manifest.json records it."""

    file_id: str
    name: str
    size: int
    sha256: str
    fetched_at: str
    kind: str = "data"
    extracted: dict[str, Any] | None = field(default=None)
    """For an extracted zip: {"dir": name, "files": [{name, size, sha256}, …]}."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["extracted"] is None:
            del d["extracted"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ManifestEntry | None:
        """An entry from the file, None when it is not one (hand-edited, or a future format)."""
        try:
            entry = cls(
                file_id=str(d["file_id"]),
                name=str(d["name"]),
                size=int(d["size"]),
                sha256=str(d["sha256"]),
                fetched_at=str(d.get("fetched_at", "")),
                kind=str(d.get("kind", "data")),
                extracted=d.get("extracted") if isinstance(d.get("extracted"), dict) else None,
            )
        except (KeyError, TypeError, ValueError):
            return None
        return entry if safe_name(entry.name, "") == entry.name else None


class RunDir:
    """The directory of one run's outputs, inside `root`."""

    def __init__(self, root: Path, path: Path, header: Mapping[str, str]) -> None:
        self.root = root
        self.path = path
        self.header = dict(header)

    @classmethod
    def layout(cls, root: Path, source: str, agent_id: str, run_id: str) -> RunDir:
        """DIR/SOURCE/AGENT_ID/RUN_ID, each part a safe directory name."""
        path = root.joinpath(*(safe_component(p) for p in (source, agent_id, run_id)))
        return cls(root, path, {"source": source, "agent_id": agent_id, "run_id": run_id})

    def ensure(self) -> None:
        """Create the directory (and the root); refuse if it resolves outside the root."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._inside(self.path)

    def final(self, name: str) -> Path:
        """The final path of file `name`, checked to resolve inside the root."""
        return self._inside(self.path / name)

    def _inside(self, path: Path) -> Path:
        root = self.root.resolve()
        if not path.resolve().is_relative_to(root):
            raise UnsafePath(f"{path} resolves outside {root}")
        return path

    # ------------------------------------------------------------------ writing

    def new_part(self) -> Path:
        """A fresh temporary path in the directory (never a final name: it starts with ".")."""
        return self.path / f"{PART_PREFIX}{secrets.token_hex(8)}{PART_SUFFIX}"

    @staticmethod
    def open_part(path: Path) -> BinaryIO:
        """Create the temporary file exclusively (no symlink followed), mode per the umask."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        return os.fdopen(os.open(path, flags, 0o666), "w+b")

    def commit(self, part: Path, final: Path) -> None:
        """Make the complete temporary file `part` durable, then rename it to `final`."""
        fd = os.open(part, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part, self._inside(final))
        fsync_dir(self.path)

    def clean_stale(self) -> None:
        """Remove what a killed process left: temporary files and extraction staging dirs."""
        for child in self.path.glob(f"{PART_PREFIX}*{PART_SUFFIX}"):
            if child.is_file() or child.is_symlink():
                child.unlink(missing_ok=True)
        safezip.clean_stale(self.path)

    # ----------------------------------------------------------------- manifest

    def load(self) -> dict[str, ManifestEntry]:
        """The manifest's entries by file id; empty when there is none or it is unreadable."""
        try:
            data = json.loads((self.path / MANIFEST).read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("manifest unreadable; fetching again", path=str(self.path), error=str(err))
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        entries = (ManifestEntry.from_dict(f) for f in files or [] if isinstance(f, dict))
        return {e.file_id: e for e in entries if e is not None}

    def save(self, entries: Iterable[ManifestEntry]) -> None:
        """Write the manifest atomically (temporary file, fsync, rename)."""
        data = {**self.header, "files": [e.to_dict() for e in entries]}
        part = self.new_part()
        with self.open_part(part) as out:
            out.write(json.dumps(data, indent=2, ensure_ascii=False).encode() + b"\n")
        try:
            self.commit(part, self.path / MANIFEST)
        finally:
            part.unlink(missing_ok=True)
