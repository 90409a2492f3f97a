"""Run outputs to disk, end to end: the Cloud simulator → watcher → files, manifest, events."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from watcher import logs
from watcher.app import App
from watcher.config import OutputsConfig, OutputSourceRules
from watcher.sinks.outputs import OutputsSink
from watcher.sinks.rundir import MANIFEST, PART_PREFIX, RunDir
from watcher_sim import SimFile, World

from .conftest import FakeClock, make_settings, source_config

AGENT = 2537


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def events_of(tmp_path: Path, type: str) -> list[dict[str, Any]]:
    path = tmp_path / "events.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [e for e in lines if e["type"] == type]


def run_dir(out: Path, run_id: int) -> Path:
    return out / "cloud" / str(AGENT) / str(run_id)


def manifest(path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((path / MANIFEST).read_text())
    return {f["name"]: f for f in data["files"]}


def downloads(world: World, file_id: int) -> int:
    return sum(1 for _, p in world.requests if p.endswith(f"/file/{file_id}/download"))


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{PART_PREFIX}*")] if root.exists() else []


@pytest.fixture
def steam(world: World) -> World:
    world.add_agent(id=AGENT, name="steam")
    return world


@pytest.fixture
def build(tmp_path: Path, cloud_url: str, clock: FakeClock, http) -> Callable[..., App]:
    """An App with outputs on, against the simulator. `source` overrides source keys."""

    def make(source: dict[str, object] | None = None, **outputs: object) -> App:
        settings = make_settings(tmp_path, source_config(cloud_url, **(source or {})))
        outputs.setdefault("dir", tmp_path / "out")
        settings.outputs = OutputsConfig(enabled=True, **outputs)  # type: ignore[arg-type]
        return App(settings, clock=clock, http=http)

    return make


async def settle(app: App) -> None:
    """Deliver everything due, including the events the sinks recorded meanwhile."""
    assert app.dispatcher is not None
    for _ in range(3):
        await app.dispatcher.drain()


async def finish(app: App, world: World, clock: FakeClock, run_id: int, status: int = 10,
                 files: list[SimFile] | None = None) -> None:  # fmt: skip
    world.add_run(AGENT, status=status, run_id=run_id, files=files)
    clock.advance(15)
    await app.once()
    await settle(app)


def outputs_sink(app: App) -> OutputsSink:
    assert app.dispatcher is not None
    sink = app.dispatcher.sinks["outputs"]
    assert isinstance(sink, OutputsSink)
    return sink


CSV = b'"Product Name","Qty"\n"Russell Brake Bleeder Screw 639590",51\n'
LOG = b"2024-12-18 13:08:49 INFO started\n2024-12-18 13:08:50 INFO done\n"


def two_files() -> list[SimFile]:
    return [SimFile(10379, "test.csv", CSV, 1), SimFile(10380, "test.log", LOG, 6)]


# --- the happy path ---------------------------------------------------------------------------


async def test_a_successful_run_lands_with_manifest_and_event(
    steam: World, build, clock: FakeClock, tmp_path: Path
) -> None:
    async with build() as app:
        await app.once()  # baseline
        await finish(app, steam, clock, 101, files=two_files())
    where = run_dir(tmp_path / "out", 101)
    assert (where / "test.csv").read_bytes() == CSV
    assert (where / "test.log").read_bytes() == LOG
    files = manifest(where)
    assert files["test.csv"]["sha256"] == sha(CSV) and files["test.csv"]["size"] == len(CSV)
    assert files["test.csv"]["file_id"] == "10379"
    assert files["test.log"]["sha256"] == sha(LOG)
    assert files["test.log"]["fetched_at"] == "2026-11-23T12:00:15Z"
    (event,) = events_of(tmp_path, "output.fetched")
    assert (event["run_id"], event["files"], event["bytes"]) == ("101", 2, len(CSV) + len(LOG))
    assert event["path"] == str(where)
    assert sorted(event["output_paths"]) == [str(where / "test.csv"), str(where / "test.log")]
    assert event["event_type"] == "run.finished"
    assert leftovers(tmp_path / "out") == []


async def test_files_the_simulator_writes_itself_are_fetched(
    steam: World, build, clock: FakeClock, tmp_path: Path
) -> None:
    async with build() as app:
        await app.once()
        await finish(app, steam, clock, 102)  # the simulator attaches steam.csv and steam.log
    run = steam.run(AGENT, 102)
    where = run_dir(tmp_path / "out", 102)
    for f in run.files:
        assert (where / f.name).read_bytes() == f.content
        assert manifest(where)[f.name]["sha256"] == sha(f.content)


@pytest.mark.parametrize("status", [6, 7, 8, 11])
async def test_other_outcomes_fetch_nothing(
    steam: World, build, clock: FakeClock, tmp_path: Path, status: int
) -> None:
    async with build() as app:
        await app.once()
        await finish(app, steam, clock, 103, status=status, files=two_files())
    assert not (tmp_path / "out").exists()
    assert not [p for _, p in steam.requests if "/files" in p]
    assert events_of(tmp_path, "output.fetched") == []


async def test_configured_outcomes_and_a_source_switched_off(
    steam: World, build, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(on=["failure"]) as app:
        await app.once()
        await finish(app, steam, clock, 104, status=6, files=two_files())
        await finish(app, steam, clock, 105, status=10, files=two_files())
    assert (run_dir(tmp_path / "out", 104) / "test.csv").exists()
    assert not run_dir(tmp_path / "out", 105).exists()

    off = {"cloud": OutputSourceRules(enabled=False)}
    async with build(on=["failure"], sources=off) as app:
        await finish(app, steam, clock, 106, status=6, files=two_files())
    assert not run_dir(tmp_path / "out", 106).exists()


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({"include": ["*.csv"]}, ["a.csv", "B.CSV"]),
        ({"exclude": ["type:log"]}, ["B.CSV", "a.csv", "notes.txt"]),
        ({"include": ["type:data"], "exclude": ["b.*"]}, ["a.csv"]),
        ({"include": ["type:6", "*.txt"]}, ["notes.txt", "run.log"]),
        ({"sources": {"cloud": OutputSourceRules(include=["*.txt"])}, "include": ["*.csv"]},
         ["notes.txt"]),
    ],
)  # fmt: skip
async def test_include_and_exclude(
    steam: World, build, clock: FakeClock, tmp_path: Path, outputs: dict, expected: list[str]
) -> None:
    files = [
        SimFile(1, "a.csv", b"1", 1),
        SimFile(2, "B.CSV", b"2", 1),
        SimFile(3, "run.log", b"3", 6),
        SimFile(4, "notes.txt", b"4", 9),
    ]
    async with build(**outputs) as app:
        await app.once()
        await finish(app, steam, clock, 107, files=files)
    assert sorted(manifest(run_dir(tmp_path / "out", 107))) == sorted(expected)
    assert sum(downloads(steam, f.id) for f in files) == len(expected)


async def test_nothing_selected_is_said_once_and_writes_nothing(
    steam: World, build, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(include=["*.parquet"]) as app:
        await app.once()
        await finish(app, steam, clock, 108, files=two_files())
    assert not (tmp_path / "out").exists()
    (event,) = events_of(tmp_path, "output.fetched")
    assert event["files"] == 0 and event["path"] is None
    assert "no file matched" in event["message"]


# --- untrusted names ----------------------------------------------------------------------------

HOSTILE = [
    (201, "../../evil.csv", "evil.csv"),
    (202, "/etc/passwd", "passwd"),
    (203, "bad\x00name.csv", "badname.csv"),
    (204, "..\\..\\win.csv", "win.csv"),
    (205, "..", "file-205"),
    (206, "", "file-206"),
    (207, "manifest.json", "manifest-2.json"),
    (208, ".bashrc", "bashrc"),
    (209, "evil.csv", "evil-2.csv"),
    (210, "tab\tand\x1bescape.txt", "tabandescape.txt"),
    (211, "x" * 300 + ".csv", "x" * 196 + ".csv"),
]


async def test_hostile_names_land_safely_inside_dir(
    steam: World, build, clock: FakeClock, tmp_path: Path
) -> None:
    files = [SimFile(fid, raw, f"content {fid}".encode(), 1) for fid, raw, _ in HOSTILE]
    async with build() as app:
        await app.once()
        await finish(app, steam, clock, 109, files=files)
    where = run_dir(tmp_path / "out", 109)
    by_name = manifest(where)
    for fid, _, expected in HOSTILE:
        assert by_name[expected]["file_id"] == str(fid), expected
        assert (where / expected).read_bytes() == f"content {fid}".encode()
    assert sorted(p.name for p in where.iterdir()) == sorted([MANIFEST, *by_name])
    outside = {p.name for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "out")}
    assert outside <= {
        "out",
        "events.jsonl",
        "state.db",
        "state.db-wal",
        "state.db-shm",
        "state.db.lock",
    }
    assert not (tmp_path.parent / "evil.csv").exists()
    assert json.loads((where / MANIFEST).read_text())["run_id"] == "109"  # not overwritten


def test_run_directories_from_hostile_ids_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "out"
    for agent, run in [("../..", "../../x"), ("sequentum/Test2/quick", "/etc"), (".", "..")]:
        where = RunDir.layout(root, "acc", agent, run)
        where.ensure()
        assert where.path.resolve().is_relative_to(root.resolve()), (agent, run)
    assert RunDir.layout(root, "acc", "sequentum/Test2/quick", "r").path == (
        root / "acc" / "sequentum_Test2_quick" / "r"
    )


async def test_a_planted_symlink_is_not_written_through(
    steam: World, build, clock: FakeClock, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    where = run_dir(tmp_path / "out", 110)
    where.mkdir(parents=True)
    (where / "test.csv").symlink_to(victim)
    async with build() as app:
        await app.once()
        await finish(app, steam, clock, 110, files=two_files())
    assert victim.read_text() == "untouched"
    (failed,) = events_of(tmp_path, "output.failed")
    assert "resolves outside" in failed["reason"] and failed["failed_files"] == ["test.csv"]


# --- interrupted downloads --------------------------------------------------------------------

BIG = bytes(range(256)) * 2048  # 512 kB: a cut is a real half-way


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("cut", "connection dropped"),  # headers promise 512 kB, the connection closes half-way
        ("truncated", "cut short (262144 of 524288 bytes)"),  # a short but well-formed answer
        ("stall", "no data within 0.25s"),
        ("reset", "connection dropped"),
    ],
)
async def test_a_download_failing_half_way_leaves_no_partial_file_and_resumes(
    steam: World,
    build,
    clock: FakeClock,
    tmp_path: Path,
    log_lines: io.StringIO,
    kind: str,
    why: str,
) -> None:
    files = [SimFile(301, "first.csv", CSV, 1), SimFile(302, "big.bin", BIG, 1)]
    steam.inject("*/file/302/download", kind=kind, times=-1, delay=0.6 if kind == "stall" else 0)
    async with build(source={"retries": 0, "timeout": 0.25}, concurrency=1) as app:
        await app.once()
        await finish(app, steam, clock, 111, files=files)
        where = run_dir(tmp_path / "out", 111)
        assert (where / "first.csv").read_bytes() == CSV
        assert not (where / "big.bin").exists()
        assert leftovers(where) == []
        assert list(manifest(where)) == ["first.csv"]
        assert events_of(tmp_path, "output.fetched") == []
        assert app.store is not None and app.store.outbox_depth() == 1  # to be retried
        assert f"big.bin: GET /api/v1/agent/2537/run/111/file/302/download: {why}" in (
            log_lines.getvalue()
        )

        steam.clear_faults()
        clock.advance(60)
        await settle(app)
    assert (where / "big.bin").read_bytes() == BIG
    assert manifest(where)["big.bin"]["sha256"] == sha(BIG)
    assert downloads(steam, 301) == 1  # already there: not fetched again
    (event,) = events_of(tmp_path, "output.fetched")
    assert event["files"] == 2 and event["fetched"] == 1


async def test_killed_mid_download_then_the_next_start_completes(
    steam: World, build, clock: FakeClock, tmp_path: Path
) -> None:
    files = [SimFile(401, "first.csv", CSV, 1), SimFile(402, "big.bin", BIG, 1)]
    steam.inject("*/file/402/download", kind="stall", delay=5)
    app = build(concurrency=1)
    async with app:
        await app.once()
        steam.add_run(AGENT, status=10, run_id=112, files=files)
        clock.advance(15)
        delivering = asyncio.create_task(app.once())
        for _ in range(200):  # until the download of big.bin is under way
            await asyncio.sleep(0.01)
            if downloads(steam, 402):
                break
        delivering.cancel()  # the process dies here
        with pytest.raises(asyncio.CancelledError):
            await delivering
    where = run_dir(tmp_path / "out", 112)
    assert (where / "first.csv").exists() and not (where / "big.bin").exists()
    assert leftovers(where) == []
    stale = where / f"{PART_PREFIX}0123456789abcdef.part"  # what a SIGKILL would leave
    stale.write_bytes(BIG[:1000])
    steam.clear_faults()
    async with build(concurrency=1) as app:  # the next start
        await settle(app)
    assert (where / "big.bin").read_bytes() == BIG
    assert downloads(steam, 401) == 1
    assert leftovers(where) == []
    assert len(events_of(tmp_path, "output.fetched")) == 1


# --- limits and a full disk -------------------------------------------------------------------


async def test_a_file_over_max_file_bytes_is_refused_without_a_request(
    steam: World, build, clock: FakeClock, tmp_path: Path
) -> None:
    files = [SimFile(501, "small.csv", CSV, 1), SimFile(502, "huge.bin", BIG, 1)]
    async with build(max_file_bytes=100_000) as app:
        await app.once()
        await finish(app, steam, clock, 113, files=files)
        assert app.store is not None and app.store.outbox_depth() == 0  # nothing to retry
    where = run_dir(tmp_path / "out", 113)
    assert list(manifest(where)) == ["small.csv"] and not (where / "huge.bin").exists()
    assert downloads(steam, 502) == 0
    (failed,) = events_of(tmp_path, "output.failed")
    assert failed["failed_files"] == ["huge.bin"]
    assert "over max_file_bytes (100000)" in failed["reason"]
    (fetched,) = events_of(tmp_path, "output.fetched")
    assert fetched["files"] == 1


async def test_a_file_lying_about_its_size_stops_at_the_limit(
    steam: World, build, clock: FakeClock, tmp_path: Path
) -> None:
    liar = SimFile(601, "liar.bin", BIG, 1, fileSize=10)  # the listing says 10 bytes
    async with build(max_file_bytes=100_000) as app:
        await app.once()
        await finish(app, steam, clock, 114, files=[liar])
        assert app.store is not None and app.store.outbox_depth() == 0
    where = run_dir(tmp_path / "out", 114)
    assert not (where / "liar.bin").exists() and leftovers(where) == []
    (failed,) = events_of(tmp_path, "output.failed")
    assert "over max_file_bytes" in failed["reason"]
    assert downloads(steam, 601) == 1  # permanent: not retried


class FullDisk:
    """An opener whose files take `room` bytes and then fail with ENOSPC, like a full disk."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.full = True

    def __call__(self, path: Path) -> BinaryIO:
        inner = RunDir.open_part(path)
        return _Filling(inner, self.room) if self.full else inner  # type: ignore[return-value]


class _Filling:
    def __init__(self, inner: BinaryIO, room: int) -> None:
        self.inner, self.room, self.used = inner, room, 0

    def write(self, data: bytes) -> int:
        if self.used + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.used += len(data)
        return self.inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __enter__(self) -> _Filling:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", "info", stream)
    try:
        yield stream
    finally:
        logs.configure("json", "info", io.StringIO())


async def test_a_full_disk_is_a_clear_error_retried_later_while_watching_goes_on(
    steam: World, build, clock: FakeClock, tmp_path: Path, log_lines: io.StringIO
) -> None:
    disk = FullDisk(room=100_000)
    async with build() as app:
        outputs_sink(app).fetcher.opener = disk
        await app.once()
        await finish(app, steam, clock, 115, files=[SimFile(701, "big.bin", BIG, 1)])
        where = run_dir(tmp_path / "out", 115)
        assert not (where / "big.bin").exists() and leftovers(where) == []
        errors = [json.loads(x) for x in log_lines.getvalue().splitlines()]
        (line,) = [e for e in errors if e["event"] == "outputs incomplete; will retry"]
        assert line["level"] == "error"
        assert "disk full: no space left on device writing" in line["error"]

        # The daemon goes on: the next run is seen and alerted like any other.
        await finish(app, steam, clock, 116, status=6)
        assert [e["run_id"] for e in events_of(tmp_path, "run.finished")] == ["115", "116"]

        disk.full = False  # space was freed
        clock.advance(60)
        await settle(app)
    assert (where / "big.bin").read_bytes() == BIG
    assert len(events_of(tmp_path, "output.fetched")) == 1
    assert events_of(tmp_path, "output.failed") == []


async def test_gave_up_after_max_age_with_output_failed(
    steam: World, build, clock: FakeClock, tmp_path: Path
) -> None:
    steam.inject("*/file/*/download", kind="http", status=503, times=-1)
    async with build(source={"retries": 0}, max_age=600) as app:
        await app.once()
        await finish(app, steam, clock, 117, files=two_files())
        clock.advance(601)
        await settle(app)
        assert app.store is not None and app.store.outbox_depth() == 0
    (failed,) = events_of(tmp_path, "output.failed")
    assert failed["reason"].startswith("gave up: cloud/2537/117: ")
    assert "HTTP 503" in failed["reason"]


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


async def test_a_real_full_disk_on_a_small_tmpfs(
    steam: World, build, clock: FakeClock, tmp_path: Path, log_lines: io.StringIO
) -> None:
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "256k"):
        pytest.skip("needs root and mount (a small tmpfs)")
    try:
        async with build(dir=small) as app:
            await app.once()
            files = [SimFile(801, "a.bin", BIG, 1), SimFile(802, "b.bin", BIG[:1000], 1)]
            await finish(app, steam, clock, 118, files=files)
            where = small / "cloud" / str(AGENT) / "118"
            assert not (where / "a.bin").exists() and leftovers(small) == []
            assert (where / "b.bin").read_bytes() == BIG[:1000]
            assert "disk full: no space left on device" in log_lines.getvalue()
            assert app.store is not None and app.store.outbox_depth() == 1
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
