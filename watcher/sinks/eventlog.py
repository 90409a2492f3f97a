"""The events file: every event as one JSON object per line (JSONL), appended and fsync'd.

A crash between writing a line and marking it delivered would repeat that line on restart, so
on start the sink reads the ids in the file's tail and skips events already written: the file
holds each event exactly once.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from watcher.events import Event
from watcher.sinks.base import DeliveryError, Done, Sink

TAIL_BYTES = 256 * 1024
REMEMBER = 4096


class EventLog(Sink):
    name = "eventlog"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._recent: deque[str] = deque(maxlen=REMEMBER)
        self._recent_set: set[str] = set()
        self._loaded = False

    def _load_tail(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - TAIL_BYTES))
                tail = f.read()
        except FileNotFoundError:
            self._loaded = True
            return
        except OSError:
            return  # unreadable for now: the write below reports it; read again next time
        self._loaded = True
        for line in tail.splitlines()[-REMEMBER:]:
            try:
                event_id = json.loads(line).get("id")
            except (ValueError, AttributeError):
                continue  # a torn first line of the tail, or a line cut by a crash
            if isinstance(event_id, str):
                self._remember(event_id)

    def _remember(self, event_id: str) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(event_id)
        self._recent_set.add(event_id)

    async def deliver(self, events: Sequence[Event], done: Done) -> None:
        if not self._loaded:
            self._load_tail()
        todo = [e for e in events if e.id not in self._recent_set]
        if not todo:
            return
        data = "".join(
            json.dumps(e.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n" for e in todo
        ).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                _ensure_line_start(fd)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise DeliveryError(f"cannot append to {self.path}: {err.strerror or err}") from None
        for e in todo:
            self._remember(e.id)


def _ensure_line_start(fd: int) -> None:
    """If a crash left a half-written last line, start on a fresh line rather than glue to it."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")
