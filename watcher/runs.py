"""What the sources report of the platforms, and what watcher remembers of a run.

- `Agent` and its `Hint` (what an agent listing tells of its runs without listing them).
- `RunSnapshot`: what a source saw of one run in one listing, built by `snapshot` from the
  platform's fields and the `StatusInfo` its status maps to (`Phase`, `Outcome`; see
  `watcher.status`).
- `RunState`: what the state file keeps of a run between polls, enough to diff the next listing.

Pure data: nothing here does I/O. Sources produce snapshots, the diff engine compares them with
the states and turns what changed into events (`watcher.events`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from watcher.codec import dumps_compact, iso, parse_iso


class Phase(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    UNKNOWN = "unknown"

    @property
    def active(self) -> bool:
        return self in (Phase.PENDING, Phase.RUNNING)


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    STOPPED = "stopped"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """A platform status mapped onto watcher's phases (see `watcher.status`)."""

    status: str  # the platform's own name, e.g. "Failure"
    status_code: int | None  # the platform's integer, when it has one
    phase: Phase
    outcome: Outcome | None = None
    with_errors: bool = False
    warning: bool = False  # still active, but already failing (ACC "In Progress With Failure")


@dataclass(frozen=True, slots=True)
class Counts:
    pages: int | None = None
    records: int | None = None
    errors: int | None = None
    requests: int | None = None
    exported: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {
            "pages": self.pages,
            "records": self.records,
            "errors": self.errors,
            "requests": self.requests,
            "exported": self.exported,
        }


@dataclass(frozen=True, slots=True)
class Agent:
    """An agent (or automation) a source watches."""

    id: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Hint:
    """What a platform's agent listing tells of an agent's runs without listing them (Sequentum
    Cloud: its last run's status and when any of its runs last changed). Only compared: when
    it moves, the agent has news. `active` (the last run is pending or running) is not part
    of the comparison."""

    status: str | None
    last_activity: datetime | None
    active: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """What a source saw of one run in one listing. Immutable; compared by value."""

    source: str
    agent_id: str
    run_id: str
    status: str
    status_code: int | None
    phase: Phase
    outcome: Outcome | None = None
    with_errors: bool = False
    warning: bool = False
    agent_name: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    counts: Counts = field(default_factory=Counts)
    message: str | None = None
    url: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()  # source-specific details, kept in events
    _json: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.agent_id, self.run_id)

    def as_json(self) -> str:
        """The snapshot as compact JSON: what the state file keeps of it. Made once."""
        if self._json is None:
            object.__setattr__(self, "_json", dumps_compact(self.to_dict()))
        assert self._json is not None
        return self._json

    def digest(self) -> str:
        """A short fingerprint of everything observable; equal digests mean nothing changed.
        (A hash of the JSON the store writes anyway: this runs for every run of a listing.)"""
        return hashlib.blake2b(self.as_json().encode(), digest_size=8).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "agent_id": self.agent_id,
            "agent_name": self.agent_name,
            "run_id": self.run_id,
            "status": self.status,
            "status_code": self.status_code,
            "phase": str(self.phase),
            "outcome": str(self.outcome) if self.outcome else None,
            "with_errors": self.with_errors,
            "warning": self.warning,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "duration_s": self.duration_s,
            "counts": self.counts.as_dict(),
            "message": self.message,
            "url": self.url,
            "extra": dict(sorted(self.extra)) if self.extra else {},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSnapshot:
        return cls(
            source=d["source"],
            agent_id=d["agent_id"],
            agent_name=d.get("agent_name"),
            run_id=d["run_id"],
            status=d["status"],
            status_code=d.get("status_code"),
            phase=Phase(d["phase"]),
            outcome=Outcome(d["outcome"]) if d.get("outcome") else None,
            with_errors=bool(d.get("with_errors")),
            warning=bool(d.get("warning")),
            started_at=parse_iso(d.get("started_at")),
            ended_at=parse_iso(d.get("ended_at")),
            duration_s=d.get("duration_s"),
            counts=Counts(**(d.get("counts") or {})),
            message=d.get("message"),
            url=d.get("url"),
            extra=tuple(sorted((d.get("extra") or {}).items())),
        )


def snapshot(
    *,
    source: str,
    agent_id: str,
    run_id: str,
    info: StatusInfo,
    agent_name: str | None = None,
    started: datetime | None = None,
    ended: datetime | None = None,
    duration: float | None = None,
    counts: Counts | None = None,
    message: str | None = None,
    url: str | None = None,
    extra: dict[str, Any] | None = None,
    end_only_when_finished: bool = False,
) -> RunSnapshot:
    """The one way a source builds a `RunSnapshot`: the status fields from `info`; the
    duration the platform gave, else the time from start to end (never negative). With
    `end_only_when_finished`, a platform that stamps an end on runs still going (the ACC) has
    it kept only once the run is finished."""
    finished = info.phase is Phase.FINISHED
    if end_only_when_finished and not finished:
        ended, duration = None, None
    if duration is None and started and ended:
        duration = max(0.0, (ended - started).total_seconds())
    return RunSnapshot(
        source=source,
        agent_id=agent_id,
        run_id=run_id,
        status=info.status,
        status_code=info.status_code,
        phase=info.phase,
        outcome=info.outcome,
        with_errors=info.with_errors,
        warning=info.warning,
        agent_name=agent_name,
        started_at=started,
        ended_at=ended,
        duration_s=duration,
        counts=counts or Counts(),
        message=message,
        url=url,
        extra=tuple(sorted(extra.items())) if extra else (),
    )


@dataclass(frozen=True, slots=True)
class RunState:
    """What watcher remembers of a run between polls: enough to diff the next listing."""

    status: str
    status_code: int | None
    phase: Phase
    outcome: Outcome | None
    attempt: int  # incremented each time a finished run is reopened
    digest: str
