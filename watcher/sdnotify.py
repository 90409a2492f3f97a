"""The systemd notification protocol (sd_notify), spoken directly: no dependency.

systemd passes a unix datagram socket in `$NOTIFY_SOCKET` to a `Type=notify` service; the service
sends newline-separated `KEY=VALUE` assignments to it: `READY=1` once it is up, `WATCHDOG=1`
regularly when `WatchdogSec=` is set (systemd passes the period in `$WATCHDOG_USEC`),
`RELOADING=1`/`READY=1` around a reload and `STOPPING=1` on shutdown. A socket path starting
with "@" lives in the Linux abstract namespace (the "@" stands for a leading NUL byte).

Without `$NOTIFY_SOCKET` (a terminal, a container, the tests) every call is a no-op, and a send
that fails is logged once and never raised: notifying systemd must not take the daemon down.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger("watcher.sdnotify")


class Notifier:
    """Sends sd_notify messages to the socket named by `$NOTIFY_SOCKET`, if any."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_usec = _watchdog_usec(env)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between two `WATCHDOG=1` pings (half the period systemd allows), or None when
        systemd asked for no watchdog."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(self, *assignments: str) -> bool:
        """Send one datagram of `KEY=VALUE` lines; True if it went out (False when disabled)."""
        if self.address is None or not assignments:
            return False
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message)
        except OSError as err:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd", error=f"{type(err).__name__}: {err}")
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """Start of a reload; `ready()` ends it. MONOTONIC_USEC lets systemd match the two."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")


def _address(value: str) -> str | bytes | None:
    """The socket address to connect to: a path, or an abstract name as bytes with a NUL."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # systemd only ever passes absolute or abstract addresses (vsock is not used)


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """`$WATCHDOG_USEC`, if it is meant for this process (`$WATCHDOG_PID`, when set, is ours)."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None
