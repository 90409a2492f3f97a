"""Safe extraction of untrusted zips: nothing outside the destination, no partial output."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from watcher.safezip import (
    STAGING_PREFIX,
    UnsafeArchive,
    ZipLimits,
    clean_stale,
    extract_zip,
    member_path,
)


def make_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def symlink_entry(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the mode lives in the high bits of external_attr
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def tree(root: Path) -> list[str]:
    """Every path under `root`, relative, sorted (directories too)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """A sandbox: the archive and the destination live in `area/work`; anything that lands
    in `area` outside `work` escaped."""
    (tmp_path / "work").mkdir()
    return tmp_path


def test_extracts_nested_files_with_hashes(area: Path) -> None:
    archive = make_zip(
        area / "work" / "a.zip",
        [("data/prices.csv", b"a,b\n1,2\n"), ("run.log", b"started\n"), ("data/empty/", b"")],
    )
    files = extract_zip(archive, area / "work" / "out")
    assert [(f.name, f.size) for f in files] == [("data/prices.csv", 8), ("run.log", 8)]
    assert (area / "work" / "out" / "data" / "prices.csv").read_bytes() == b"a,b\n1,2\n"
    assert (area / "work" / "out" / "data" / "empty").is_dir()
    import hashlib

    assert files[1].sha256 == hashlib.sha256(b"started\n").hexdigest()
    assert not list((area / "work").glob(f"{STAGING_PREFIX}*"))


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.txt", "climbs out"),
        ("a/../../evil.txt", "climbs out"),
        ("..\\..\\evil.txt", "climbs out"),
        ("/etc/passwd", "absolute"),
        ("\\windows\\evil.txt", "absolute"),
        ("C:/evil.txt", "absolute"),
        ("c:evil.txt", "absolute"),
    ],
)
def test_hostile_paths_refuse_the_whole_archive(area: Path, name: str, why: str) -> None:
    archive = make_zip(area / "work" / "a.zip", [("good.txt", b"fine"), (name, b"pwned")])
    with pytest.raises(UnsafeArchive, match=why):
        extract_zip(archive, area / "work" / "out")
    assert tree(area) == ["work", "work/a.zip"]  # nothing written, not even good.txt


def test_nul_byte_in_a_name_is_refused(area: Path) -> None:
    with pytest.raises(UnsafeArchive, match="NUL"):
        member_path("evil\x00.txt")


def test_symlink_entry_is_refused_and_nothing_is_written(area: Path) -> None:
    archive = make_zip(
        area / "work" / "a.zip",
        [("good.txt", b"fine"), (symlink_entry("link", "/etc"), b"/etc"), ("link/x", b"y")],
    )
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        extract_zip(archive, area / "work" / "out")
    assert tree(area) == ["work", "work/a.zip"]


def test_special_files_are_refused(area: Path) -> None:
    info = zipfile.ZipInfo("fifo")
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    archive = make_zip(area / "work" / "a.zip", [(info, b"")])
    with pytest.raises(UnsafeArchive, match="not a regular file"):
        extract_zip(archive, area / "work" / "out")


def test_control_characters_in_names_are_replaced() -> None:
    assert member_path("dir/bad\x1bname.txt").as_posix() == "dir/bad_name.txt"
    assert member_path("./a//b/./c.txt").as_posix() == "a/b/c.txt"


def test_a_bomb_by_ratio_is_refused_before_writing(area: Path) -> None:
    archive = make_zip(area / "work" / "bomb.zip", [("zeros.bin", bytes(20 << 20))])
    assert archive.stat().st_size < 100_000  # 20 MiB of zeros deflate to a few kB
    with pytest.raises(UnsafeArchive, match="ratio"):
        extract_zip(archive, area / "work" / "out", ZipLimits(max_ratio=100))
    assert tree(area) == ["work", "work/bomb.zip"]


def test_total_bytes_limit_over_many_entries(area: Path) -> None:
    entries = [(f"part{i}.txt", bytes(range(256)) * 40) for i in range(10)]  # 10 kB each
    archive = make_zip(area / "work" / "a.zip", entries)
    with pytest.raises(UnsafeArchive, match="in total"):
        extract_zip(archive, area / "work" / "out", ZipLimits(max_total_bytes=50_000))
    assert tree(area) == ["work", "work/a.zip"]


def test_entry_count_limit(area: Path) -> None:
    archive = make_zip(area / "work" / "a.zip", [(f"f{i}", b"x") for i in range(30)])
    with pytest.raises(UnsafeArchive, match="30 entries"):
        extract_zip(archive, area / "work" / "out", ZipLimits(max_entries=20))


def test_per_entry_byte_limit(area: Path) -> None:
    archive = make_zip(area / "work" / "a.zip", [("small", b"x" * 10), ("big", b"y" * 5000)])
    with pytest.raises(UnsafeArchive, match="'big': more than 1000 bytes"):
        extract_zip(archive, area / "work" / "out", ZipLimits(max_entry_bytes=1000))


def _lie_about_size(archive: Path, declared: int) -> None:
    """Rewrite the uncompressed size in the central directory and local header: a bomb that
    claims to be small."""
    raw = bytearray(archive.read_bytes())
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, declared)
    struct.pack_into("<I", raw, raw.index(b"PK\x03\x04") + 22, declared)
    archive.write_bytes(bytes(raw))


def test_a_bomb_lying_about_its_size_stops_and_leaves_no_partial_file(area: Path) -> None:
    archive = make_zip(area / "work" / "liar.zip", [("zeros.bin", bytes(5 << 20))])
    _lie_about_size(archive, 1000)
    with pytest.raises(UnsafeArchive):
        extract_zip(archive, area / "work" / "out")
    assert tree(area) == ["work", "work/liar.zip"]


def test_not_a_zip_is_refused(area: Path) -> None:
    bogus = area / "work" / "x.zip"
    bogus.write_bytes(b"<html>Sign in</html>")
    with pytest.raises(UnsafeArchive, match="not a readable zip"):
        extract_zip(bogus, area / "work" / "out")


def test_encrypted_entries_are_refused(area: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("secret.txt", b"hidden")
    raw = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.index(signature) + offset
        struct.pack_into("<H", raw, at, struct.unpack_from("<H", raw, at)[0] | 0x1)
    archive = area / "work" / "enc.zip"
    archive.write_bytes(bytes(raw))
    with pytest.raises(UnsafeArchive, match="encrypted"):
        extract_zip(archive, area / "work" / "out")


def test_duplicate_and_conflicting_entries_are_refused(area: Path) -> None:
    archive = make_zip(area / "work" / "a.zip", [("a.txt", b"1"), ("a.txt/b", b"2")])
    with pytest.raises(UnsafeArchive, match="duplicate or conflicting"):
        extract_zip(archive, area / "work" / "out")
    assert tree(area) == ["work", "work/a.zip"]


def test_a_second_extraction_replaces_the_first_whole(area: Path) -> None:
    first = make_zip(area / "work" / "1.zip", [("old.txt", b"old"), ("same.txt", b"v1")])
    second = make_zip(area / "work" / "2.zip", [("same.txt", b"v2")])
    extract_zip(first, area / "work" / "out")
    extract_zip(second, area / "work" / "out")
    assert tree(area / "work" / "out") == ["same.txt"]
    assert (area / "work" / "out" / "same.txt").read_bytes() == b"v2"


def test_a_refused_archive_keeps_the_previous_extraction(area: Path) -> None:
    good = make_zip(area / "work" / "good.zip", [("keep.txt", b"kept")])
    bad = make_zip(area / "work" / "bad.zip", [("../x", b"x")])
    extract_zip(good, area / "work" / "out")
    with pytest.raises(UnsafeArchive):
        extract_zip(bad, area / "work" / "out")
    assert tree(area / "work" / "out") == ["keep.txt"]


def test_a_full_disk_propagates_and_cleans_up(area: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_zip(area / "work" / "a.zip", [("a.txt", b"x" * 100), ("b.txt", b"y" * 100)])
    import os

    real_fdopen = os.fdopen
    calls = {"n": 0}

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fdopen(fd, *args, **kwargs):
        calls["n"] += 1
        f = real_fdopen(fd, *args, **kwargs)
        return Full(f) if calls["n"] == 2 else f

    monkeypatch.setattr("watcher.safezip.os.fdopen", fdopen)
    with pytest.raises(OSError, match="No space"):
        extract_zip(archive, area / "work" / "out")
    assert tree(area) == ["work", "work/a.zip"]


def test_clean_stale_removes_leftover_staging(area: Path) -> None:
    (area / "work" / f"{STAGING_PREFIX}dead" / "x").mkdir(parents=True)
    clean_stale(area / "work")
    assert tree(area) == ["work"]
