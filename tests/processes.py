"""Real processes for the process-level tests: `python -m watcher …` as operators run it, a
config file to run it with, and webhook receivers on 127.0.0.1 for its alerts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

KEY = "daemon-ops-key-31337"
ROOT = Path(__file__).resolve().parent.parent
TITLE = 'title = "{{ event.run_id }}|{{ event.outcome }}"\n'
"""A subscription line whose alerts are titled RUN_ID|OUTCOME, for counting them."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(
    tmp_path: Path,
    base_url: str,
    tail: str = "",
    key: str = 'api_key = "${TEST_DAEMON_KEY}"',
    *,
    kind: str = "sequentum_cloud",
    name: str = "cloud",
    watcher: str = "",
    state_path: Path | None = None,
) -> Path:
    """watcher.toml in `tmp_path`: state and events files beside it, JSON logs, one source
    polled every second; `watcher` adds lines to [watcher], `tail` tables after the source."""
    path = tmp_path / "watcher.toml"
    path.write_text(
        f'[watcher]\nstate_path = "{state_path or tmp_path / "state.db"}"\n'
        f'events_path = "{tmp_path / "events.jsonl"}"\nlog_format = "json"\n{watcher}\n'
        f'[[sources]]\nname = "{name}"\nkind = "{kind}"\nbase_url = "{base_url}"\n'
        f"{key}\nretries = 0\ntimeout = 5\njitter = 0\n"
        "poll_interval = 1\npoll_interval_active = 1\n" + tail
    )
    return path


def subscription(host: str, *lines: str, name: str = "ops") -> str:
    """A [[subscriptions]] table alerting the receiver at `host`, one alert per event."""
    body = "".join(line + "\n" for line in lines)
    return (
        f'\n[[subscriptions]]\nname = "{name}"\nurls = ["json://{host}/{name}"]\n'
        f"group_threshold = 100000\n{TITLE}{body}"
    )


def environment(env: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "TEST_DAEMON_KEY": KEY, "PYTHONPATH": str(ROOT), **(env or {})}


def watcher(
    config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`python -m watcher --config CONFIG ARGS…` to its end: exit code, stdout, stderr."""
    return subprocess.run(
        [sys.executable, "-m", "watcher", "--config", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment(env),
        timeout=timeout,
    )


def watchers(config: Path, *commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
    """Several `watcher` commands run at the same time: their results, in the order given."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: watcher(config, *args), commands))


def events(path: Path) -> list[dict]:
    """The events file, one dict per line (none when it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def of_type(path: Path, type: str, **fields: object) -> list[dict]:
    return [
        e
        for e in events(path)
        if e["type"] == type and all(e.get(k) == v for k, v in fields.items())
    ]


class Daemon:
    """`python -m watcher run` (or another command) with its stderr (JSON log lines) collected
    by a thread."""

    def __init__(self, config: Path, env: dict[str, str] | None = None, command: str = "run"):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", "--config", str(config), command],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(env),
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

    def at_level(self, *levels: str) -> list[dict]:
        return [line for line in self.lines if line.get("level") in levels]

    def trouble(self) -> list[dict]:
        """Lines a clean run must not have: errors, tracebacks, anything not JSON."""
        return [
            line
            for line in self.lines
            if line.get("level") in ("error", "critical", "unparsed")
            or "exception" in line
            or "Traceback" in json.dumps(line)
        ]

    def stop(self, timeout: float = 15, sig: signal.Signals = signal.SIGTERM) -> float:
        """SIGTERM (or `sig`); return how long the process took to exit."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout)
        self._reader.join(5)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)


class Receiver:
    """A webhook receiver (apprise json://) on 127.0.0.1, from a thread: the (path, body) of
    each POST, answered with `status` after `delay` seconds. With `hold_first`, the answer to
    the first request takes that long (or until `released`), whatever the sender's timeouts."""

    def __init__(self, *, status: int = 200, delay: float = 0.0, hold_first: float = 0.0):
        self.got: list[tuple[str, dict]] = []
        self.status = status
        self.delay = delay
        self.hold_first = hold_first
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.got.append((self.path, json.loads(body)))
                try:
                    if receiver.hold_first and len(receiver.got) == 1:
                        self.answer_slowly(receiver.hold_first)
                        return
                    if receiver.delay:
                        time.sleep(receiver.delay)
                    self.send_response(receiver.status)
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone (killed, or gave up)

            def answer_slowly(self, seconds: float) -> None:
                """The answer a byte every 0.2 s for `seconds` (or until released): slow
                enough to take that long, never silent long enough for a read timeout."""
                self.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline and not receiver.released.wait(0.2):
                    self.wfile.write(b".")
                    self.wfile.flush()
                self.wfile.write(b"\r\nContent-Length: 0\r\n\r\n")

            def log_message(self, *args: object) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def titles(self) -> list[str]:
        """The title of each alert received (RUN_ID|OUTCOME with `TITLE`)."""
        return [body.get("title", "") for _, body in self.got]

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
