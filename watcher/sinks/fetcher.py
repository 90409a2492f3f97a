"""Fetch one run's outputs to disk: list, select, stream, rename into place, record.

`Fetcher.fetch` does the work for the outputs sink and for `watcher fetch`: it asks the source
for the run's files (`Source.outputs`), keeps those the `[outputs]` rules select (`selects`),
and streams each one through the source (`Source.download`) into DIR/SOURCE/AGENT_ID/RUN_ID/ by
way of `RunDir` (safe names, temporary file, fsync, rename, manifest). A file the manifest
already records with the same size and sha256 is skipped, so a restart resumes. Zip outputs
(ACC logs and backups) are unpacked with `watcher.safezip` when `extract` is on.

Failures are per file and say whether trying again may help: the platform down, a download cut
off or stalled, a full disk may pass; a file over `max_file_bytes`, a hostile archive or a 4xx
will not. A run whose files cannot even be listed raises `FetchError`.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import BinaryIO, Protocol

from watcher.codec import iso
from watcher.config import OutputsConfig, OutputSourceRules
from watcher.errors import SourceError, SourceProtocolError, SourceTooLarge, SourceUnavailable
from watcher.safezip import UnsafeArchive, ZipLimits, extract_zip
from watcher.sinks.rundir import MANIFEST, ManifestEntry, RunDir, UnsafePath, safe_name
from watcher.sinks.rundir import unique_names as _unique
from watcher.sources.base import RunFile, Source

SourceLookup = Callable[[str], Source | None]
Opener = Callable[[Path], BinaryIO]
"""Creates a new temporary file for writing; `RunDir.open_part` unless a test injects one."""

HASH_CHUNK = 1 << 20


class FetchError(Exception):
    """Nothing of a run could be fetched: no such source, the listing failed, or the run's
    directory cannot be made. `retryable` says whether later may work."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class FileResult:
    """What became of one selected file: "fetched" now, already "present", "failed", or
    "absent" (an optional file the run does not have)."""

    file_id: str
    name: str
    status: str
    path: Path | None = None
    size: int = 0
    reason: str | None = None
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One run's fetch: its directory (None when no file was selected) and each file's fate."""

    path: Path | None
    listed: int
    files: tuple[FileResult, ...] = ()

    @property
    def in_place(self) -> list[FileResult]:
        return [f for f in self.files if f.status in ("fetched", "present")]

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def retryable(self) -> list[FileResult]:
        return [f for f in self.failed if f.retryable]


class Progress(Protocol):
    """What `watcher fetch` shows while files arrive."""

    def start(self, name: str, size: int | None) -> Callable[[int], None]:
        """A file begins; the callable is told the bytes written so far."""
        ...

    def done(self, result: FileResult) -> None: ...


def selects(rules: OutputSourceRules, item: RunFile, name: str) -> bool:
    """Whether the rules' include/exclude patterns select `item` (on disk as `name`)."""

    def match(pattern: str) -> bool:
        if pattern.lower().startswith("type:"):
            wanted = pattern[5:].strip().lower()
            return wanted == item.kind or wanted == str(item.file_type)
        return fnmatchcase(name.lower(), pattern.lower())

    if rules.include and not any(match(p) for p in rules.include):
        return False
    return not any(match(p) for p in rules.exclude or ())


class Fetcher:
    """Fetches runs' outputs: one fetch per run directory at a time, and at most
    `concurrency` downloads at once over all runs. `source(name)` finds a source by name;
    `opener` creates temporary files (a test injects one that fills up like a disk)."""

    def __init__(
        self,
        config: OutputsConfig,
        sources: SourceLookup,
        *,
        clock: Callable[[], datetime],
        opener: Opener = RunDir.open_part,
        concurrency: int | None = None,
    ) -> None:
        self.config = config
        self.source = sources
        self.clock = clock
        self.opener = opener
        self.downloads = asyncio.Semaphore(concurrency or config.concurrency)
        self._locks: weakref.WeakValueDictionary[Path, asyncio.Lock] = weakref.WeakValueDictionary()
        self.limits = ZipLimits(
            max_total_bytes=config.max_extract_bytes,
            max_entries=config.max_extract_entries,
            max_ratio=config.max_extract_ratio,
            max_entry_bytes=config.max_file_bytes,
        )

    async def fetch(
        self,
        source_name: str,
        agent_id: str,
        run_id: str,
        *,
        dest: Path | None = None,
        everything: bool = False,
        progress: Progress | None = None,
    ) -> FetchResult:
        """Fetch the selected files of a run into its directory (or `dest`, used as is).

        `everything` ignores the include/exclude rules. Raises `FetchError` when the run's files
        cannot be listed; per-file failures are in the result."""
        source = self.source(source_name)
        if source is None or not source.has_outputs:
            raise FetchError(f"{source_name}: no source with run outputs", retryable=False)
        try:
            listed = await source.outputs(agent_id, run_id)
        except SourceError as err:
            raise FetchError(str(err), retryable=_retryable(err)) from None
        rules = self.config.for_source(source_name)
        wanted = [(f, safe_name(f.name, f"file-{f.file_id}")) for f in listed]
        chosen = [(f, n) for f, n in wanted if everything or selects(rules, f, n)]
        if not chosen:
            return FetchResult(None, len(listed))
        root = dest if dest is not None else self.config.dir
        run = RunDir.layout(root, source_name, agent_id, run_id)
        if dest is not None:
            run = RunDir(dest, dest, run.header)
        lock = self._locks.setdefault(run.path.absolute(), asyncio.Lock())
        async with lock:
            try:
                await asyncio.to_thread(_prepare, run)
            except (OSError, UnsafePath) as err:
                raise FetchError(_disk_reason(err, run.path), retryable=True) from None
            extract = bool(rules.extract)
            job = _RunJob(self, source, run, agent_id, extract=extract, progress=progress)
            results = await job.run(chosen)
        return FetchResult(run.path, len(listed), tuple(results))


def _prepare(run: RunDir) -> None:
    run.ensure()
    run.clean_stale()


class _RunJob:
    """The fetch of one run's chosen files, sharing its manifest."""

    def __init__(
        self,
        fetcher: Fetcher,
        source: Source,
        run: RunDir,
        agent_id: str,
        *,
        extract: bool,
        progress: Progress | None,
    ) -> None:
        self.f = fetcher
        self.source = source
        self.run_dir = run
        self.agent_id = agent_id
        self.extract = extract
        self.progress = progress
        self.manifest: dict[str, ManifestEntry] = {}
        self._saving = asyncio.Lock()

    async def run(self, chosen: list[tuple[RunFile, str]]) -> list[FileResult]:
        """Fetch `chosen` (files with their safe names); a file keeps the name the manifest
        gave it, a new one gets its safe name made unique in the directory."""
        self.manifest = await asyncio.to_thread(self.run_dir.load)
        known = {fid: e.name for fid, e in self.manifest.items()}
        files: dict[str, tuple[RunFile, str]] = {}
        for item, name in chosen:
            files.setdefault(item.file_id, (item, name))  # a listing repeating an id: once
        fresh = [(f, n) for f, n in files.values() if f.file_id not in known]
        names = _unique((n for _, n in fresh), [MANIFEST, *known.values()])
        assigned = {f.file_id: n for (f, _), n in zip(fresh, names, strict=True)} | known
        jobs = (self._one(f, assigned[f.file_id]) for f, _ in files.values())
        return list(await asyncio.gather(*jobs))

    async def _one(self, item: RunFile, name: str) -> FileResult:
        try:
            final = self.run_dir.final(name)
        except UnsafePath as err:
            return self._done(FileResult(item.file_id, name, "failed", reason=str(err)))
        entry = self.manifest.get(item.file_id)
        limit = self.f.config.max_file_bytes
        try:
            if entry is not None and await asyncio.to_thread(_intact, entry, final, item):
                result = FileResult(item.file_id, name, "present", final, entry.size)
            elif item.size is not None and item.size > limit:
                reason = f"{item.size} bytes, over max_file_bytes ({limit})"
                result = FileResult(item.file_id, name, "failed", reason=reason)
            else:
                result = await self._download(item, name, final)
            if result.status != "failed" and item.archive and self.extract:
                result = await self._extract(item, result)
        except SourceTooLarge:
            reason = f"over max_file_bytes ({limit})"
            result = FileResult(item.file_id, name, "failed", reason=reason)
        except SourceProtocolError as err:
            if item.optional and err.http_status == 404:
                result = FileResult(item.file_id, name, "absent", reason="not provided")
            else:
                result = FileResult(item.file_id, name, "failed", reason=err.detail)
        except SourceError as err:
            retry = _retryable(err)
            result = FileResult(item.file_id, name, "failed", reason=err.detail, retryable=retry)
        except (OSError, UnsafePath) as err:
            reason = _disk_reason(err, final)
            result = FileResult(item.file_id, name, "failed", reason=reason, retryable=True)
        return self._done(result)

    def _done(self, result: FileResult) -> FileResult:
        if self.progress is not None:
            self.progress.done(result)
        return result

    async def _download(self, item: RunFile, name: str, final: Path) -> FileResult:
        """Stream the file to a temporary file, then rename it into place; never a partial file
        at `final`, even when cancelled."""
        async with self.f.downloads:
            report = self.progress.start(name, item.size) if self.progress else None
            part = self.run_dir.new_part()
            try:
                with self.f.opener(part) as out:
                    got = await self.source.download(
                        item,
                        out,
                        agent_id=self.agent_id,
                        max_bytes=self.f.config.max_file_bytes,
                        progress=report,
                    )
                if item.size is not None and got.size < item.size:
                    raise SourceUnavailable(
                        self.source.name,
                        f"GET {item.path}: cut short ({got.size} of {item.size} bytes)",
                        agent_id=self.agent_id,
                    )
                await asyncio.to_thread(self.run_dir.commit, part, final)
            finally:
                part.unlink(missing_ok=True)
        entry = ManifestEntry(
            item.file_id, name, got.size, got.sha256, iso(self.f.clock()) or "", item.kind
        )
        await self._record(entry)
        return FileResult(item.file_id, name, "fetched", final, got.size)

    async def _extract(self, item: RunFile, result: FileResult) -> FileResult:
        """Unpack a zip beside itself (log.zip → log/) unless the manifest says it was."""
        entry = self.manifest[item.file_id]
        if entry.extracted is not None:
            return result
        assert result.path is not None
        folder = result.path.name.removesuffix(".zip")
        others = {e.name.lower() for e in self.manifest.values()} | {MANIFEST}
        if folder == result.path.name or folder.lower() in others:
            folder = result.path.name + ".d"
        target = self.run_dir.final(folder)
        try:
            files = await asyncio.to_thread(extract_zip, result.path, target, self.f.limits)
        except UnsafeArchive as err:
            reason = f"kept as a zip, not extracted: {err}"
            return FileResult(item.file_id, result.name, "failed", result.path, result.size, reason)
        listing = [{"name": e.name, "size": e.size, "sha256": e.sha256} for e in files]
        done = ManifestEntry(
            entry.file_id, entry.name, entry.size, entry.sha256, entry.fetched_at, entry.kind,
            {"dir": folder, "files": listing},
        )  # fmt: skip
        await self._record(done)
        return result

    async def _record(self, entry: ManifestEntry) -> None:
        async with self._saving:
            self.manifest[entry.file_id] = entry
            await asyncio.to_thread(self.run_dir.save, list(self.manifest.values()))


def _intact(entry: ManifestEntry, final: Path, item: RunFile) -> bool:
    """Whether the manifest's file is in place unchanged: same size (also as listed now) and
    the same sha256 on disk."""
    if item.size is not None and item.size != entry.size:
        return False  # the platform has a different file under this id now
    try:
        if final.is_symlink() or final.stat().st_size != entry.size:
            return False
        digest = hashlib.sha256()
        with final.open("rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == entry.sha256


def _retryable(err: SourceError) -> bool:
    """Platform trouble (down, slow, credentials being rotated) may pass; a 4xx will not."""
    return not isinstance(err, SourceProtocolError | SourceTooLarge)


def _disk_reason(err: OSError | UnsafePath, where: Path) -> str:
    """A write failure as one clear line."""
    if isinstance(err, UnsafePath):
        return str(err)
    if err.errno == errno.ENOSPC:
        return f"disk full: no space left on device writing {where}"
    if err.errno == errno.EDQUOT:
        return f"disk quota exceeded writing {where}"
    return f"cannot write {where}: {err.strerror or err}"
