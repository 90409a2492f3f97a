"""A run's output directory: safe names, unique names, the manifest, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from watcher.sinks.rundir import (
    MANIFEST,
    PART_PREFIX,
    ManifestEntry,
    RunDir,
    UnsafePath,
    safe_component,
    safe_name,
    unique_names,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("test.csv", "test.csv"),
        ("../../evil", "evil"),
        ("/etc/passwd", "passwd"),
        ("C:\\Windows\\win.ini", "win.ini"),
        ("evil\x00.csv", "evil.csv"),
        ("line\nbreak\r.csv", "linebreak.csv"),
        ("...hidden", "hidden"),
        ("dir/", "id-7"),
        ("..", "id-7"),
        ("", "id-7"),
        ("\x00\x01", "id-7"),
        ("  spaced name.csv  ", "spaced name.csv"),
        ("données.csv", "données.csv"),
        ("é" * 150 + ".csv", "é" * 98 + ".csv"),  # 200 bytes of UTF-8 at most
    ],
)
def test_safe_name(raw: str, expected: str) -> None:
    assert safe_name(raw, "id-7") == expected


def test_safe_name_fallback_is_itself_made_safe() -> None:
    assert safe_name("", "../../x") == "_.._x"
    assert safe_name("", "") == "file"


def test_safe_component() -> None:
    assert safe_component("sequentum/Test2/quick") == "sequentum_Test2_quick"
    assert safe_component("..") == "_" and safe_component("../..") == "_.."
    assert safe_component("a\\b") == "a_b"


def test_unique_names() -> None:
    assert unique_names(["a.csv", "A.CSV", "a.csv", "noext", "noext"], [MANIFEST, "b"]) == [
        "a.csv",
        "A-2.CSV",
        "a-3.csv",
        "noext",
        "noext-2",
    ]
    assert unique_names(["manifest.json"], [MANIFEST]) == ["manifest-2.json"]


def test_manifest_round_trip_and_atomic_write(tmp_path: Path) -> None:
    run = RunDir.layout(tmp_path, "cloud", "2537", "101")
    run.ensure()
    entry = ManifestEntry("10379", "test.csv", 3, "ab" * 32, "2026-11-23T12:00:00Z")
    run.save([entry])
    assert run.load() == {"10379": entry}
    data = json.loads((run.path / MANIFEST).read_text())
    assert (data["source"], data["agent_id"], data["run_id"]) == ("cloud", "2537", "101")
    assert not list(run.path.glob(f"{PART_PREFIX}*"))


def test_a_corrupt_or_hostile_manifest_is_ignored(tmp_path: Path) -> None:
    run = RunDir.layout(tmp_path, "cloud", "1", "2")
    run.ensure()
    (run.path / MANIFEST).write_text("{ torn")
    assert run.load() == {}
    hostile = {"file_id": "9", "name": "../../x", "size": 1, "sha256": "0", "fetched_at": ""}
    (run.path / MANIFEST).write_text(json.dumps({"files": [hostile, {"name": 5}]}))
    assert run.load() == {}


def test_commit_renames_a_complete_file_into_place(tmp_path: Path) -> None:
    run = RunDir.layout(tmp_path, "cloud", "1", "2")
    run.ensure()
    part = run.new_part()
    with run.open_part(part) as out:
        out.write(b"whole")
    run.commit(part, run.final("x.csv"))
    assert (run.path / "x.csv").read_bytes() == b"whole" and not part.exists()
    with pytest.raises(FileExistsError):
        run.open_part(run.path / "x.csv")  # O_EXCL: never opens an existing path


def test_a_run_directory_symlinked_outside_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out" / "cloud" / "1").mkdir(parents=True)
    (tmp_path / "out" / "cloud" / "1" / "2").symlink_to(elsewhere)
    with pytest.raises(UnsafePath):
        RunDir.layout(tmp_path / "out", "cloud", "1", "2").ensure()


def test_clean_stale_removes_only_leftovers(tmp_path: Path) -> None:
    run = RunDir.layout(tmp_path, "cloud", "1", "2")
    run.ensure()
    (run.path / f"{PART_PREFIX}dead.part").write_bytes(b"half")
    (run.path / "keep.csv").write_bytes(b"whole")
    run.clean_stale()
    assert [p.name for p in run.path.iterdir()] == ["keep.csv"]
