"""The sd_notify client against real unix datagram sockets: by path, and abstract ("@")."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.sdnotify import Notifier


def receive(sock: socket.socket) -> list[str]:
    """One datagram, as its `KEY=VALUE` lines."""
    sock.settimeout(2)
    return sock.recv(4096).decode().split("\n")


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    yield sock, path
    sock.close()


def test_ready_watchdog_reloading_stopping_reach_a_socket_by_path(path_socket) -> None:
    sock, path = path_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("watching 2 source(s)")
    assert receive(sock) == ["READY=1", "STATUS=watching 2 source(s)"]
    assert notifier.watchdog()
    assert receive(sock) == ["WATCHDOG=1"]
    assert notifier.reloading()
    first, second = receive(sock)
    assert first == "RELOADING=1" and second.startswith("MONOTONIC_USEC=")
    assert int(second.partition("=")[2]) > 0
    assert notifier.stopping()
    assert receive(sock) == ["STOPPING=1"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux-only")
def test_abstract_namespace_address() -> None:
    name = f"watcher-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        notifier = Notifier({"NOTIFY_SOCKET": f"@{name}"})
        assert notifier.ready()
        assert receive(sock) == ["READY=1"]


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.ready() is False
    assert notifier.stopping() is False  # still no exception, and warned only once


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    path_socket, env: dict[str, str], interval: float | None
) -> None:
    _, path = path_socket
    assert Notifier({"NOTIFY_SOCKET": path, **env}).watchdog_interval == interval


def test_watchdog_needs_a_socket() -> None:
    assert Notifier({"WATCHDOG_USEC": "1000000"}).watchdog_interval is None
