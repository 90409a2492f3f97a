"""The names watcher's shapes had before they moved to the modules that own them:
`watcher.runs` (agents, snapshots, statuses, run state), `watcher.events` (the event
vocabulary and shape) and `watcher.codec` (moments and JSON as text). Kept until every import
names those modules.
"""

from __future__ import annotations

from watcher.codec import dumps_compact, iso, parse_iso
from watcher.events import (
    Event,
    EventType,
    event_id,
    follow_up,
    run_event,
    source_event,
    with_data,
)
from watcher.runs import (
    Agent,
    Counts,
    Hint,
    Outcome,
    Phase,
    RunSnapshot,
    RunState,
    StatusInfo,
    snapshot,
)

__all__ = [
    "Agent",
    "Counts",
    "Event",
    "EventType",
    "Hint",
    "Outcome",
    "Phase",
    "RunSnapshot",
    "RunState",
    "StatusInfo",
    "dumps_compact",
    "event_id",
    "follow_up",
    "iso",
    "parse_iso",
    "run_event",
    "snapshot",
    "source_event",
    "with_data",
]
