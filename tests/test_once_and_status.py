"""`watcher once`, `status` and `check` as real processes: a state file that cannot be used is
refused in one line and left as it was, an endless answer costs bounded memory, `once` delivers
what it caused before it exits, and the read-only commands never create, lock or write the
state file — also while a daemon holds it."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from watcher.schema import SCHEMA_VERSION
from watcher_sim import World

from .conftest import served_in_a_thread
from .processes import (
    KEY,
    ROOT,
    Daemon,
    Receiver,
    environment,
    of_type,
    subscription,
    watcher,
    watchers,
    write_config,
)

FAILURE, RUNNING, SUCCESS = 6, 1, 10


@pytest.fixture
def sim() -> Iterator[tuple[World, str]]:
    """The simulated Cloud: agent 2537 with one finished run."""
    world = World()
    world.api_keys = {KEY}
    world.add_agent(id=2537, name="steam")
    world.add_run(2537, status=SUCCESS, run_id=100)
    with served_in_a_thread(world) as url:
        yield world, url


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- a state file that cannot be used -------------------------------------------------------


@pytest.fixture(scope="module")
def real_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state file as `watcher once` leaves it: 50 agents with a few runs each."""
    tmp = tmp_path_factory.mktemp("real")
    world = World()
    world.api_keys = {KEY}
    for agent in range(1, 51):
        world.add_agent(id=agent)
        for status in (SUCCESS, FAILURE, SUCCESS):
            world.add_run(agent, status=status)
    with served_in_a_thread(world) as url:
        done = watcher(write_config(tmp, url), "once")
    assert done.returncode == 0, done.stderr
    return tmp / "state.db"


def truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def garbage(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(64 * 1024))


def newer(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()


@pytest.mark.parametrize("command", ["once", "run"])
@pytest.mark.parametrize("spoil", [truncated, garbage, newer], ids=lambda f: f.__name__)
def test_an_unusable_state_file_is_one_line_and_left_as_it_was(
    real_state: Path, spoil, command: str, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    shutil.copyfile(real_state, state)
    spoil(state)
    before = digest(state)
    done = watcher(write_config(tmp_path, "http://127.0.0.1:9"), command, timeout=20)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"watcher: watcher.state_path: {state}: "), line
    assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    assert digest(state) == before
    assert not [n for n in names(tmp_path) if n.startswith("state.db-")]  # no -wal, no -shm
    if spoil is newer:
        assert f"(state schema {SCHEMA_VERSION + 1}; " in line
    else:
        assert "not a watcher state file or damaged" in line


@pytest.mark.parametrize("command", ["once", "run"])
def test_a_missing_state_directory_is_one_line_and_not_created(
    command: str, tmp_path: Path
) -> None:
    state = tmp_path / "not-mounted" / "state.db"
    config = write_config(tmp_path, "http://127.0.0.1:9", state_path=state)
    done = watcher(config, command, timeout=20)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"watcher: watcher.state_path: {state}: directory {state.parent} does not exist; "
        "create it or set watcher.state_path elsewhere"
    ]
    assert not state.parent.exists()


# --- an answer without end ------------------------------------------------------------------


class Endless:
    """An HTTP server on 127.0.0.1 whose every answer is a 200 "JSON" body that never ends:
    about 100 MB/s of garbage, until the client hangs up."""

    CHUNK = b"[" + b"7," * (512 * 1024)

    def __init__(self) -> None:
        self.sent = 0
        self.stop = threading.Event()
        endless = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                try:
                    while not endless.stop.is_set():
                        self.wfile.write(Endless.CHUNK)
                        endless.sent += len(Endless.CHUNK)
                        time.sleep(0.01)  # 1 MiB each 10 ms
                except OSError:
                    pass  # the client hung up

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


def run_measured(config: Path, *args: str, timeout: float = 60) -> tuple[int, str, int]:
    """`watcher ARGS` to its end: (exit code, stderr, its peak resident memory in bytes).

    The peak is the child's own high-water mark (VmHWM in /proc/PID/status), read while it
    runs: its rusage would not do, as Linux carries into it the memory of the process it was
    forked (or vforked) from — this test process, hundreds of MiB into a full test run."""
    err_path = config.with_name("stderr.txt")
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", "--config", str(config), *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=environment(),
        )
    deadline = time.monotonic() + timeout
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _high_water(proc.pid))
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"watcher {' '.join(args)} did not finish within {timeout}s")
        time.sleep(0.005)
    return proc.returncode, err_path.read_text(), peak


def _high_water(pid: int) -> int:
    """The peak resident memory of a running process so far, in bytes (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.parametrize("limit", [None, 1 << 20], ids=["default", "1MiB"])
def test_an_endless_answer_is_a_protocol_error_in_bounded_memory(
    limit: int | None, tmp_path: Path
) -> None:
    server = Endless()
    tail = f"max_response_bytes = {limit}\n" if limit else ""
    try:
        code, stderr, peak = run_measured(write_config(tmp_path, server.url, tail), "once")
    finally:
        server.close()
    limit = limit or 32 << 20
    assert code == 1, stderr
    refused = (
        f"watcher: cloud: GET /api/v1/agent/all: answer larger than {limit} bytes "
        "(max_response_bytes); not read"
    )
    assert refused in stderr.splitlines(), stderr
    assert "Traceback" not in stderr and "Unclosed" not in stderr
    assert server.sent > limit
    assert peak < 300 << 20, f"peak RSS {peak >> 20} MiB"
    print(f"\nendless answer: {server.sent >> 20} MiB sent, peak RSS {peak >> 20} MiB")


# --- `watcher once` delivers what it caused ---------------------------------------------------


def test_once_delivers_what_its_poll_caused_before_it_exits(sim, tmp_path: Path) -> None:
    world, url = sim
    run = world.add_run(2537, status=RUNNING, run_id=101).id
    events_path = tmp_path / "events.jsonl"
    with Receiver() as hook:
        outputs = f'\n[outputs]\nenabled = true\ndir = "{tmp_path / "outputs"}"\n'
        tail = subscription(hook.host, 'on = ["success"]') + outputs
        config = write_config(tmp_path, url, tail)
        first = watcher(config, "once")
        assert first.returncode == 0, first.stderr
        assert not of_type(events_path, "run.finished")  # the baseline is quiet
        # The run finishes while the next poll is waiting for its listing.
        stall = world.inject("/api/v1/agent/2537/runs", kind="stall", delay=0.5)
        once = Daemon(config, command="once")
        once.wait_for(lambda: stall.hits, "the poll waiting for the listing")
        world.set_status(2537, run, SUCCESS)
        assert once.proc.wait(30) == 0, once.lines[-5:]
    finished = of_type(events_path, "run.finished", run_id=str(run))
    assert [e["outcome"] for e in finished] == ["success"]
    [fetched] = of_type(events_path, "output.fetched", run_id=str(run))
    assert fetched["files"] == 2
    assert len(of_type(events_path, "notification.sent", run_id=str(run))) == 1
    assert hook.titles() == [f"{run}|success"]
    assert (tmp_path / "outputs" / "cloud" / "2537" / str(run)).is_dir()


def test_once_leaves_a_hanging_channel_at_its_deadline_and_delivers_next_time(
    sim, tmp_path: Path
) -> None:
    world, url = sim
    events_path = tmp_path / "events.jsonl"
    with Receiver(hold_first=60) as hook:
        config = write_config(
            tmp_path, url, subscription(hook.host), watcher="shutdown_timeout = 2"
        )
        assert watcher(config, "once").returncode == 0
        run = world.add_run(2537, status=FAILURE).id
        started = time.monotonic()
        held = watcher(config, "once")
        took = time.monotonic() - started
        assert held.returncode == 0, held.stderr
        assert took < 2 + 5, f"once took {took:.1f}s"  # its deadline, and Python starting
        assert not of_type(events_path, "notification.sent")
        assert len(hook.got) == 1
        again = watcher(config, "once")
        assert again.returncode == 0, again.stderr
    assert hook.titles() == [f"{run}|failure"] * 2
    assert [e["run_id"] for e in of_type(events_path, "notification.sent")] == [str(run)]
    assert [e["run_id"] for e in of_type(events_path, "run.finished")] == [str(run)]


# --- status and check: read only ------------------------------------------------------------


def test_status_and_check_create_no_state_file_and_take_no_lock(sim, tmp_path: Path) -> None:
    _, url = sim
    config = write_config(tmp_path, url)
    state = tmp_path / "state.db"
    commands = (["status"], ["status", "--source", "cloud"], ["status", "--json"], ["check"])
    for done in watchers(config, *commands):
        assert done.returncode == 0, done.stderr
        assert "FAIL" not in done.stdout
    assert names(tmp_path) == ["watcher.toml"]
    assert watcher(config, "status").stdout.startswith(f"no state yet at {state}")

    assert watcher(config, "once").returncode == 0
    files = names(tmp_path)
    assert files == ["events.jsonl", "state.db", "state.db.lock", "watcher.toml"]
    before = digest(state), (tmp_path / "state.db.lock").read_bytes()
    for done in watchers(config, *commands):
        assert done.returncode == 0, done.stderr
    assert names(tmp_path) == files
    assert (digest(state), (tmp_path / "state.db.lock").read_bytes()) == before


def test_status_reads_the_outbox_by_channel_while_the_daemon_runs(sim, tmp_path: Path) -> None:
    world, url = sim
    lock = tmp_path / "state.db.lock"
    with Receiver(status=500) as hook:
        config = write_config(tmp_path, url, subscription(hook.host))
        daemon = Daemon(config)
        try:
            daemon.wait_for(lambda: daemon.logged("source.baselined"), "the baseline")
            run = world.add_run(2537, status=FAILURE).id
            daemon.wait_for(lambda: daemon.logged("delivery failed; will retry"), "a failure")
            status, only, check = watchers(
                config, ["status"], ["status", "--source", "cloud"], ["check"]
            )
            assert lock.read_text() == f"{daemon.proc.pid}\n"  # the daemon's lease, untouched
            assert daemon.proc.poll() is None
            assert daemon.stop() < 10
        finally:
            daemon.kill()
    assert daemon.proc.returncode == 0
    for done in (status, only, check):
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
    for done in (status, only):
        lines = done.stdout.splitlines()
        assert any(line.split()[:4] == ["cloud", "2537", "steam", str(run)] for line in lines)
        assert "1 agent(s); 1 delivery(ies) waiting in the outbox" in lines
        header = next(line for line in lines if line.startswith("CHANNEL"))
        assert header.split() == ["CHANNEL", "WAITING", "OLDEST", "ATTEMPTS", "LAST", "ERROR"]
        [row] = [line for line in lines if line.startswith("ops: json://")]
        assert f"ops: json://{hook.host}/ops" in row
        waiting, attempts = row.split()[2:6:2]
        assert waiting == "1" and int(attempts) >= 1  # retried again if `status` took 5 s
        assert "error=500" in row and row.count("json://") == 1  # the reason, not the URL again
    assert "cloud" in check.stdout and "FAIL" not in check.stdout


def test_once_gives_up_what_waits_for_a_removed_subscription(sim, tmp_path: Path) -> None:
    world, url = sim
    events_path = tmp_path / "events.jsonl"
    with Receiver(status=500) as hook:
        config = write_config(tmp_path, url, subscription(hook.host))
        assert watcher(config, "once").returncode == 0
        run = world.add_run(2537, status=FAILURE).id
        assert watcher(config, "once").returncode == 0
    assert len(hook.got) == 1  # tried once; it waits in the outbox for the next attempt
    config = write_config(tmp_path, url)  # the subscription is removed
    [row] = [line for line in watcher(config, "status").stdout.splitlines() if "notify:" in line]
    assert row.startswith("notify:ops:") and row.split()[1:5] == [
        "(no",
        "longer",
        "configured)",
        "1",
    ]
    assert "error=500" in row and "json://" not in row
    done = watcher(config, "once")
    assert done.returncode == 0, done.stderr
    [failed] = of_type(events_path, "notification.failed")
    assert (failed["run_id"], failed["reason"]) == (str(run), "channel removed")
    assert "0 delivery(ies) waiting in the outbox" in watcher(config, "status").stdout
