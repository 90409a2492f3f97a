"""`watcher run` as systemd and operators see it: a real process, real signals, a real
NOTIFY_SOCKET, the HTTP endpoint, SIGHUP reloads. The simulator and a webhook receiver are
served from threads of the test process, on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher_sim import World

from .conftest import served_in_a_thread
from .processes import KEY, Daemon, Receiver, free_port, write_config


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
    with Receiver() as receiver:
        yield receiver.got, receiver.host


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
