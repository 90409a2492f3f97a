"""Events: one vocabulary (`EventType`) and one shape (`Event`) for everything that happened.

The diff engine makes run events from snapshots (`run_event`), the poller and the rules make
source events (`source_event`), sinks record what they did about an event (`follow_up`).
An event's id is a hash of the facts it states (`event_id`), so the same facts seen again
(a replay after a restart) give the same id and the state file recognises them. An event
serialises as one JSON object (`to_dict`), with its type-specific `data` flattened in.

Pure data: nothing here does I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields, replace
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from watcher.codec import iso, parse_iso
from watcher.runs import Counts, Outcome, Phase, RunSnapshot


class EventType(StrEnum):
    """Every type of event watcher records, whoever records it: one vocabulary."""

    # what the platforms' runs and the sources did (the poller)
    SOURCE_BASELINED = "source.baselined"
    SOURCE_FAILED = "source.failed"
    SOURCE_RECOVERED = "source.recovered"
    RUN_DISCOVERED = "run.discovered"
    RUN_STATUS_CHANGED = "run.status_changed"
    RUN_FINISHED = "run.finished"
    RUN_REOPENED = "run.reopened"
    RUN_UNKNOWN_STATUS = "run.unknown_status"
    RUN_WARNING = "run.warning"
    # what no status shows (rules)
    RUN_STUCK = "run.stuck"
    AGENT_MISSED_SCHEDULE = "agent.missed_schedule"
    RUN_ANOMALY = "run.anomaly"
    RUN_RETRY_REQUESTED = "run.retry_requested"
    AGENT_FLAPPING = "agent.flapping"
    # what the sinks did about events
    NOTIFICATION_SENT = "notification.sent"
    NOTIFICATION_FAILED = "notification.failed"
    NOTIFICATION_SUPPRESSED = "notification.suppressed"
    OUTPUT_FETCHED = "output.fetched"
    OUTPUT_FAILED = "output.failed"
    # watcher itself
    STATE_RESTORED = "state.restored"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. Serialised as one JSON object per line in the events file."""

    id: str
    type: str
    ts: datetime
    source: str
    source_kind: str
    agent_id: str | None = None
    agent_name: str | None = None
    run_id: str | None = None
    status: str | None = None
    status_code: int | None = None
    phase: Phase | None = None
    outcome: Outcome | None = None
    previous_status: str | None = None
    attempt: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    counts: Counts | None = None
    message: str | None = None
    url: str | None = None
    data: tuple[tuple[str, Any], ...] = ()  # type-specific fields, flattened into the JSON

    def __post_init__(self) -> None:
        shadowed = [k for k, _ in self.data if k in _FIELDS]
        if shadowed:  # it would never reach the JSON: the field of that name is written first
            raise ValueError(f"event data {shadowed} named like fields of the event itself")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "ts": iso(self.ts),
            "source": self.source,
            "source_kind": self.source_kind,
            "agent_id": self.agent_id,
            "agent_name": self.agent_name,
            "run_id": self.run_id,
            "status": self.status,
            "status_code": self.status_code,
            "phase": str(self.phase) if self.phase else None,
            "outcome": str(self.outcome) if self.outcome else None,
            "previous_status": self.previous_status,
            "attempt": self.attempt,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "duration_s": self.duration_s,
            "counts": self.counts.as_dict() if self.counts else None,
            "message": self.message,
            "url": self.url,
        }
        for k, v in self.data:
            d.setdefault(k, v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        known = {f.name for f in fields(cls)}
        return cls(
            id=d["id"],
            type=d["type"],
            ts=_required_time(d["ts"]),
            source=d["source"],
            source_kind=d["source_kind"],
            agent_id=d.get("agent_id"),
            agent_name=d.get("agent_name"),
            run_id=d.get("run_id"),
            status=d.get("status"),
            status_code=d.get("status_code"),
            phase=Phase(d["phase"]) if d.get("phase") else None,
            outcome=Outcome(d["outcome"]) if d.get("outcome") else None,
            previous_status=d.get("previous_status"),
            attempt=d.get("attempt") or 0,
            started_at=parse_iso(d.get("started_at")),
            ended_at=parse_iso(d.get("ended_at")),
            duration_s=d.get("duration_s"),
            counts=Counts(**d["counts"]) if d.get("counts") else None,
            message=d.get("message"),
            url=d.get("url"),
            data=tuple((k, v) for k, v in d.items() if k not in known),
        )

    def get(self, key: str, default: Any = None) -> Any:
        """A type-specific field from `data`."""
        return dict(self.data).get(key, default)


_FIELDS = frozenset(f.name for f in fields(Event))


def _required_time(value: Any) -> datetime:
    moment = parse_iso(value)
    if moment is None:
        raise ValueError(f"not a time: {value!r:.40}")
    return moment


def event_id(*parts: object) -> str:
    """Stable id of an event: the same facts always hash to the same id, so replays are seen."""
    return _hash(*parts)[:24]


def _hash(*parts: object) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(repr(part.value if isinstance(part, Enum) else part).encode())
        h.update(b"\x1f")
    return h.hexdigest()


def run_event(
    type: EventType | str,
    snap: RunSnapshot,
    *,
    source_kind: str,
    ts: datetime,
    attempt: int,
    previous_status: str | None = None,
    id_parts: tuple[object, ...] = (),
) -> Event:
    """An event about a run, carrying everything the snapshot knows."""
    key = snap.outcome if type == EventType.RUN_FINISHED else snap.status
    return Event(
        id=event_id(snap.source, snap.agent_id, snap.run_id, str(type), key, attempt, *id_parts),
        type=str(type),
        ts=ts,
        source=snap.source,
        source_kind=source_kind,
        agent_id=snap.agent_id,
        agent_name=snap.agent_name,
        run_id=snap.run_id,
        status=snap.status,
        status_code=snap.status_code,
        phase=snap.phase,
        outcome=snap.outcome if snap.phase is Phase.FINISHED else None,
        previous_status=previous_status,
        attempt=attempt,
        started_at=snap.started_at,
        ended_at=snap.ended_at,
        duration_s=snap.duration_s,
        counts=snap.counts,
        message=snap.message,
        url=snap.url,
        data=_run_data(snap),
    )


def _run_data(snap: RunSnapshot) -> tuple[tuple[str, Any], ...]:
    """The type-specific fields a run event carries: `with_errors` when set, and the source's
    `extra` details (failed steps, log path, …), so alerts can show them."""
    data = dict(snap.extra)
    if snap.with_errors:
        data["with_errors"] = True
    return tuple(sorted(data.items(), key=lambda kv: kv[0]))


def source_event(
    type: EventType | str,
    *,
    source: str,
    source_kind: str,
    ts: datetime,
    message: str | None = None,
    id_parts: tuple[object, ...] = (),
    **data: Any,
) -> Event:
    return Event(
        id=event_id(source, str(type), *id_parts),
        type=str(type),
        ts=ts,
        source=source,
        source_kind=source_kind,
        message=message,
        data=tuple(sorted(data.items())),
    )


def follow_up(
    event: Event,
    type: EventType | str,
    *,
    by: str,
    ts: datetime,
    message: str | None = None,
    **data: Any,
) -> Event:
    """An event a sink records about `event` (notification.sent, output.fetched, …): it keeps
    the run's identity, points back with `event_id`, and its id is stable per (type, sink)."""
    return Event(
        id=event_id(str(type), by, event.id),
        type=str(type),
        ts=ts,
        source=event.source,
        source_kind=event.source_kind,
        agent_id=event.agent_id,
        agent_name=event.agent_name,
        run_id=event.run_id,
        status=event.status,
        outcome=event.outcome,
        message=message,
        data=tuple(sorted({"event_id": event.id, "event_type": event.type, **data}.items())),
    )


def with_data(event: Event, **data: Any) -> Event:
    merged = dict(event.data)
    merged.update(data)
    return replace(event, data=tuple(sorted(merged.items())))
