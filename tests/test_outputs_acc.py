"""ACC run outputs: the run log and backup data zips, fetched and (optionally) safely extracted."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from watcher.app import App
from watcher.config import OutputsConfig, Settings, SourceConfig, WatcherSection
from watcher.sinks.rundir import MANIFEST
from watcher.sources.base import RunFile
from watcher_sim import AccWorld, make_acc_app

from .conftest import FakeClock

TOKEN = "sim-acc-token"
PATH = "sequentum/Test2/quick"
SUCCEEDED, FAILED = 4, 5


def zip_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


def events_of(tmp_path: Path, type: str) -> list[dict[str, Any]]:
    path = tmp_path / "events.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [e for e in lines if e["type"] == type]


@pytest.fixture
def acc(clock: FakeClock) -> AccWorld:
    world = AccWorld(now=clock, tokens=(TOKEN,))
    world.add_agent(PATH)
    return world


@pytest.fixture
async def acc_url(aiohttp_server, acc: AccWorld) -> str:
    server = await aiohttp_server(make_acc_app(acc), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def build(tmp_path: Path, acc_url: str, clock: FakeClock, http) -> Callable[..., App]:
    def make(**outputs: object) -> App:
        source = SourceConfig(
            name="acc", kind="sequentum_acc", base_url=acc_url, api_key=TOKEN, agents=[PATH],
            timeout=2, retries=0, jitter=0,
        )  # fmt: skip
        settings = Settings(
            watcher=WatcherSection(
                state_path=tmp_path / "state.db", events_path=tmp_path / "events.jsonl"
            ),
            sources=[source],
            outputs=OutputsConfig(enabled=True, dir=tmp_path / "out", **outputs),  # type: ignore[arg-type]
        )
        return App(settings, clock=clock, http=http)

    return make


async def finish(app: App, acc: AccWorld, clock: FakeClock, status: int = SUCCEEDED) -> Path:
    """A run of the agent finishes; return where its outputs go."""
    run = acc.add_run(acc.agent_at(PATH).agentId, status=status)
    clock.advance(15)
    await app.once()
    assert app.dispatcher is not None
    for _ in range(3):
        await app.dispatcher.drain()
    return Path(app.settings.outputs.dir) / "acc" / "sequentum_Test2_quick" / run.agentRunHistoryId


def manifest(where: Path) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in json.loads((where / MANIFEST).read_text())["files"]}


async def test_log_and_backup_zips_land_as_is(build, acc: AccWorld, clock: FakeClock) -> None:
    async with build() as app:
        await app.once()
        where = await finish(app, acc, clock)
    files = manifest(where)
    assert sorted(files) == ["backup.zip", "log.zip"]
    assert (files["log.zip"]["file_id"], files["log.zip"]["kind"]) == ("log", "log")
    with zipfile.ZipFile(where / "log.zip") as zf:
        (name,) = zf.namelist()
        assert "Status: Succeeded" in zf.read(name).decode()
    with zipfile.ZipFile(where / "backup.zip") as zf:
        assert zf.namelist() == ["quick.csv"]
    assert not (where / "log").exists()  # extract is off


async def test_extract_unpacks_beside_the_zips(
    build, acc: AccWorld, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(extract=True) as app:
        await app.once()
        where = await finish(app, acc, clock)
    assert (where / "backup" / "quick.csv").read_text().startswith("Id,Title,Price\n")
    (log_file,) = (where / "log").iterdir()
    assert log_file.name.endswith(".log")
    extracted = manifest(where)["backup.zip"]["extracted"]
    assert extracted["dir"] == "backup" and extracted["files"][0]["name"] == "quick.csv"
    (event,) = events_of(tmp_path, "output.fetched")
    assert event["files"] == 2


async def test_type_patterns_select_the_log_only(build, acc: AccWorld, clock: FakeClock) -> None:
    async with build(include=["type:log"]) as app:
        await app.once()
        where = await finish(app, acc, clock)
    assert sorted(manifest(where)) == ["log.zip"]
    assert not any("/backup" in p for _, p in acc.requests)


async def test_no_backup_data_is_not_a_failure(
    build, acc: AccWorld, clock: FakeClock, tmp_path: Path
) -> None:
    acc.inject("/api/run/*/backup", kind="http", status=404, times=-1)
    async with build() as app:
        await app.once()
        where = await finish(app, acc, clock)
        assert app.store is not None and app.store.outbox_depth() == 0
    assert sorted(manifest(where)) == ["log.zip"]
    assert events_of(tmp_path, "output.failed") == []


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ([("ok.csv", b"1"), ("../../../evil.csv", b"pwned")], "climbs out"),
        ([("/tmp/evil.csv", b"pwned")], "absolute path"),
        ([("zeros.bin", bytes(50 << 20))], "decompression bomb"),
    ],
)
async def test_a_hostile_backup_zip_is_kept_but_never_extracted(
    build, acc: AccWorld, clock: FakeClock, tmp_path: Path, entries, why: str
) -> None:
    acc.inject("/api/run/*/backup", kind="http", status=200, body=zip_bytes(entries), times=-1)
    async with build(extract=True) as app:
        await app.once()
        where = await finish(app, acc, clock)
        assert app.store is not None and app.store.outbox_depth() == 0  # permanent: no retry
    assert not (where / "backup").exists()
    assert (where / "backup.zip").exists()  # the bytes as the server sent them, for a human
    assert (where / "log").is_dir()
    assert not list(tmp_path.rglob("evil.csv")) and not list(tmp_path.rglob("zeros.bin"))
    (failed,) = events_of(tmp_path, "output.failed")
    assert failed["failed_files"] == ["backup.zip"]
    assert "not extracted" in failed["reason"] and why in failed["reason"]


async def test_job_runs_and_hostile_run_ids(build, acc: AccWorld) -> None:
    async with build() as app:
        source = app.source("acc")
        assert source is not None and source.has_outputs
        guid = "9040f86d-bbc1-4038-9868-501145cc2370"
        assert [f.path for f in await source.outputs(PATH, f"job-{guid}")] == [
            f"/api/job/run/{guid}/logs",
            f"/api/job/run/{guid}/backup",
        ]
        files = await source.outputs(PATH, guid)
        assert files[1] == RunFile(
            "backup", "backup.zip", f"/api/run/{guid}/backup", kind="data", archive=True,
            optional=True,
        )  # fmt: skip
        from watcher.errors import SourceProtocolError

        for bad in ("../../api/agent", "x/../y", guid + "/../z"):
            with pytest.raises(SourceProtocolError, match="GUID"):
                await source.outputs(PATH, bad)
