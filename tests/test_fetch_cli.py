"""`watcher fetch SOURCE AGENT_ID RUN_ID [--dest DIR]` against the simulator."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.cli import main
from watcher.config import load_settings
from watcher.fetch_cli import fetch_command
from watcher_sim import SimFile, World

from .conftest import served_in_a_thread

KEY = "fetch-cli-key-77"
CSV = b"a,b\n1,2\n"
BIG = bytes(300_000)


@pytest.fixture
def sim() -> Iterator[tuple[World, str]]:
    """The simulator on 127.0.0.1 in its own thread, so the command can run its own loop."""
    world = World()
    world.api_keys = {KEY}
    world.add_agent(id=2537, name="steam")
    files = [
        SimFile(11, "prices.csv", CSV, 1),
        SimFile(12, "../run.log", b"log\n", 6),
        SimFile(13, "huge.bin", BIG, 1),
    ]
    world.add_run(2537, status=10, run_id=100, files=files)
    with served_in_a_thread(world) as url:
        yield world, url


def config(tmp_path: Path, base_url: str, outputs: str = "", limit: int = 100_000) -> Path:
    path = tmp_path / "watcher.toml"
    path.write_text(
        f"""
[watcher]
state_path = "{tmp_path / "state.db"}"
events_path = ""
log_format = "json"

[[sources]]
name = "cloud"
kind = "sequentum_cloud"
base_url = "{base_url}"
api_key = "{KEY}"
retries = 0
timeout = 5
enabled = false

[outputs]
dir = "{tmp_path / "out"}"
max_file_bytes = {limit}
{outputs}
"""
    )
    return path


def test_plain_lines_when_not_a_terminal(sim, tmp_path: Path, capsys) -> None:
    _, url = sim
    path = config(tmp_path, url, 'include = ["*.csv", "*.log"]')
    dest = tmp_path / "here"
    assert main(["--config", str(path), "fetch", "cloud", "2537", "100", "--dest", str(dest)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out[:2]) == [
        f"fetched prices.csv ({len(CSV)} bytes) -> {dest / 'prices.csv'}",
        f"fetched run.log (4 bytes) -> {dest / 'run.log'}",
    ]
    assert out[2] == f"2 file(s), {len(CSV) + 4} bytes in {dest}"
    assert (dest / "prices.csv").read_bytes() == CSV
    files = {f["name"]: f for f in json.loads((dest / "manifest.json").read_text())["files"]}
    assert files["prices.csv"]["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert "\r" not in "".join(out)  # no progress bar

    assert main(["--config", str(path), "fetch", "cloud", "2537", "100", "--dest", str(dest)]) == 0
    again = capsys.readouterr().out
    assert f"present prices.csv (already fetched) -> {dest / 'prices.csv'}" in again


def test_default_destination_is_the_outputs_layout(sim, tmp_path: Path, capsys) -> None:
    _, url = sim
    path = config(tmp_path, url, 'include = ["*.csv"]')
    assert main(["--config", str(path), "fetch", "cloud", "2537", "100"]) == 0
    assert (tmp_path / "out" / "cloud" / "2537" / "100" / "prices.csv").read_bytes() == CSV
    assert not (tmp_path / "state.db").exists()  # a manual fetch records nothing
    assert not (tmp_path / "state.db.lock").exists()  # and takes no lease: a daemon may run


def test_a_file_over_the_limit_fails_with_one_line(sim, tmp_path: Path, capsys) -> None:
    _, url = sim
    path = config(tmp_path, url)
    assert main(["--config", str(path), "fetch", "cloud", "2537", "100", "--all"]) == 1
    captured = capsys.readouterr()
    assert "FAILED  huge.bin: 300000 bytes, over max_file_bytes (100000)" in captured.out
    (line,) = captured.err.strip().splitlines()
    assert line == "watcher: fetch incomplete: huge.bin: 300000 bytes, over max_file_bytes (100000)"
    assert not (tmp_path / "out" / "cloud" / "2537" / "100" / "huge.bin").exists()


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["cloud", "2537", "999"], 1, "watcher: cloud: GET /api/v1/agent/2537/run/999/files: "
                                      "HTTP 404 Not Found: Run 999 not found for agent 2537"),
        (["cloud", "2537", "../1"], 1, "watcher: cloud: agent and run ids must be numbers"),
        (["nope", "2537", "100"], 2, "watcher: fetch: no source named 'nope' (have: cloud)"),
    ],
)  # fmt: skip
def test_failures_exit_non_zero_with_one_line(
    sim, tmp_path: Path, capsys, args: list[str], code: int, expected: str
) -> None:
    _, url = sim
    assert main(["--config", str(config(tmp_path, url)), "fetch", *args]) == code
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == expected


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_on_a_terminal(sim, tmp_path: Path) -> None:
    _, url = sim
    settings = load_settings(config(tmp_path, url, limit=1_000_000))
    out, err = Terminal(), io.StringIO()
    code = asyncio.run(
        fetch_command(settings, "cloud", "2537", "100", dest=tmp_path / "d", out=out, err=err)
    )
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "huge.bin" in text and "\r" in text  # tqdm drew (and redrew) a bar
    assert f"fetched huge.bin ({len(BIG)} bytes)" in text
    assert (tmp_path / "d" / "huge.bin").stat().st_size == len(BIG)
