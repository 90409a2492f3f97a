"""Reading back the events the state file still holds (those not yet pruned after
`event_retention_days`): the newest, for the status page and `watcher status`, and those
recorded after a given one, for an `/events` client that reconnects with `Last-Event-ID`.

The `events` table numbers events in the order they were recorded (`seq`); both queries are
bounded, so a client cannot make the daemon read the whole table at once.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from watcher.events import Event


@dataclass(frozen=True, slots=True)
class Replay:
    """The events recorded after a given one, oldest first; `more` when the bound cut them."""

    events: list[Event]
    more: bool


class EventQueries:
    """The event-reading methods of `Store` (which provides the connection)."""

    _db: sqlite3.Connection

    def recent_events(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` events, newest first, as they are written to the events file."""
        rows = self._db.execute("SELECT body FROM events ORDER BY seq DESC LIMIT ?", (limit,))
        return [json.loads(body) for (body,) in rows]

    def events_after(self, event_id: str, limit: int) -> Replay | None:
        """The events recorded after the event `event_id`, oldest first, at most `limit` of
        them; None when no event with that id is held (never recorded, or pruned since)."""
        row = self._db.execute("SELECT seq FROM events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            return None
        rows = self._db.execute(
            "SELECT body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (row[0], limit + 1)
        ).fetchall()
        events = [Event.from_dict(json.loads(body)) for (body,) in rows[:limit]]
        return Replay(events, more=len(rows) > limit)
