"""`watcher run` as systemd and operators see it: a real process, real signals, a real
NOTIFY_SOCKET, the HTTP endpoint, SIGHUP reloads. The simulator and a webhook receiver are
served from threads of the test process, on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from watcher_sim import World

from .conftest import served_in_a_thread

KEY = "daemon-ops-key-31337"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sim() -> Iterator[tuple[World, str]]:
    """The simulated Cloud on 127.0.0.1, served from its own thread and event loop."""
    world = World()
    world.api_keys = {KEY}
    world.add_agent(id=2537, name="steam")
    world.add_run(2537, status=9, run_id=100)
    with served_in_a_thread(world) as url:
        yield world, url


@pytest.fixture
def hook() -> Iterator[tuple[list[tuple[str, dict]], str]]:
    """A webhook receiver (apprise json://): (path, body) of each POST, and its host:port."""
    got: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield got, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(
    tmp_path: Path, base_url: str, tail: str = "", key: str = 'api_key = "${TEST_DAEMON_KEY}"'
) -> Path:
    path = tmp_path / "watcher.toml"
    path.write_text(
        f'[watcher]\nstate_path = "{tmp_path / "state.db"}"\n'
        f'events_path = "{tmp_path / "events.jsonl"}"\nlog_format = "json"\n\n'
        f'[[sources]]\nname = "cloud"\nkind = "sequentum_cloud"\nbase_url = "{base_url}"\n'
        f"{key}\nretries = 0\ntimeout = 5\njitter = 0\n"
        "poll_interval = 1\npoll_interval_active = 1\n" + tail
    )
    return path


class Daemon:
    """`python -m watcher run` with its stderr (JSON log lines) collected by a thread."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", "--config", str(config), "run"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TEST_DAEMON_KEY": KEY, "PYTHONPATH": str(ROOT), **env},
        )
        self.lines: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"event": line.rstrip("\n"), "level": "unparsed"})

    def wait_for(self, condition: Callable[[], object], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                self._reader.join(5)
                code = self.proc.returncode
                pytest.fail(f"daemon exited ({code}) waiting for {what}: {self.lines[-5:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; last lines: {self.lines[-5:]}")
            time.sleep(0.05)

    def logged(self, event: str) -> list[dict]:
        return [line for line in self.lines if line.get("event") == event]

    def stop(self, timeout: float = 15) -> float:
        """SIGTERM; return how long the process took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        self._reader.join(5)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_systemd_hears_ready_watchdog_and_stopping(sim, tmp_path: Path) -> None:
    _, url = sim
    port = free_port()
    short = tempfile.mkdtemp(prefix="wn-")  # unix socket paths are limited to ~107 bytes
    notify_path = os.path.join(short, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.settimeout(20)
    credentials = tmp_path / "credentials"  # as systemd's LoadCredential= provides it
    credentials.mkdir()
    (credentials / "sequentum").write_text(KEY + "\n")
    daemon = Daemon(
        write_config(tmp_path, url, key='api_key_file = "sequentum"'),
        {
            "CREDENTIALS_DIRECTORY": str(credentials),
            "NOTIFY_SOCKET": notify_path,
            "WATCHDOG_USEC": "200000",  # a ping every 0.1 s
            "WATCHER_HTTP__LISTEN": f"127.0.0.1:{port}",
        },
    )
    try:
        received: list[list[str]] = []

        def next_message() -> list[str]:
            message = sock.recv(4096).decode().split("\n")
            received.append(message)
            return message

        assert next_message()[0] == "READY=1"  # the first thing the daemon says
        assert next_message() == ["WATCHDOG=1"]
        assert next_message() == ["WATCHDOG=1"]
        assert http_get(f"http://127.0.0.1:{port}/healthz") == (200, b'{"status": "ok"}')
        daemon.wait_for(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, "readiness")
        took = daemon.stop()
        while next_message() != ["STOPPING=1"]:
            assert received[-1] == ["WATCHDOG=1"]
    finally:
        daemon.kill()
        sock.close()
        os.unlink(notify_path)
        os.rmdir(short)
    assert daemon.proc.returncode == 0 and took < 10
    assert daemon.lines[-1]["event"] == "watcher stopped"
    assert all("level" in line and "timestamp" in line for line in daemon.lines)
    assert not any(KEY in json.dumps(line) for line in daemon.lines)


def test_sighup_applies_a_new_subscription_and_rejects_a_broken_file(
    sim, hook, tmp_path: Path
) -> None:
    world, url = sim
    got, host = hook
    config = write_config(tmp_path, url)
    daemon = Daemon(config, {})
    events = tmp_path / "events.jsonl"
    try:
        daemon.wait_for(lambda: events.exists() and events.read_text(), "the baseline")
        subscription = f'\n[[subscriptions]]\nname = "ops"\nurls = ["json://{host}/ops"]\n'
        write_config(tmp_path, url, subscription)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda: daemon.logged("config reloaded"), "the reload")
        world.add_run(2537, status=6, run_id=101)
        daemon.wait_for(lambda: len(got) == 1, "the first alert")

        write_config(tmp_path, url, subscription + 'on = ["fail"]\nmax_age = -1\n')
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda: len(daemon.logged("config reload rejected")) == 2, "rejection")
        world.add_run(2537, status=6, run_id=102)
        daemon.wait_for(lambda: len(got) == 2, "an alert through the old config")
        assert daemon.stop() < 10
    finally:
        daemon.kill()
    assert daemon.proc.returncode == 0
    [reloaded] = daemon.logged("config reloaded")
    assert reloaded["level"] == "info" and reloaded["subscriptions_added"] == ["ops"]
    first, second = daemon.logged("config reload rejected")
    assert first["level"] == second["level"] == "error"
    assert first["problem"].startswith('subscriptions[0].on: unknown trigger "fail"')
    assert second["problem"] == "subscriptions[0].max_age: must be > 0"
    assert [path for path, _ in got] == ["/ops", "/ops"]
    finished = daemon.logged("run.finished")
    assert {line["run_id"] for line in finished} == {"101", "102"}
    assert all(line["source"] == "cloud" and line["agent_id"] == "2537" for line in finished)
