"""Silences: "I know, stop telling me", said by a person for a while.

A silence has matchers — `source`, `agent` (an id, a name or a glob, in any case, as a
subscription's `agents`), `outcome`, `type` (an event type or a glob, "run.*") — a start, an
end, a comment and an author, as Alertmanager's. An event that every matcher of an active
silence matches is delivered to no alert channel (the events file still gets it): each channel
records a `notification.suppressed` event with the silence's id instead, and the alert is not
sent when the silence ends. Expired silences are kept and listed for `RETENTION`, then pruned.

`new_silence` checks what a person (the CLI, the HTTP API) asked for and names the bad field in
a `SilenceError`. Pure: the state file keeps silences (`records`), the gate applies them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from watcher.codec import iso, parse_iso
from watcher.durations import parse_duration
from watcher.events import Event
from watcher.runs import Outcome

MATCHERS = ("source", "agent", "outcome", "type")
RETENTION = timedelta(days=5)
"""How long an expired silence is kept and listed (Alertmanager's default retention)."""
_TYPE = re.compile(r"[a-z_*?\[\]]+(\.[a-z_*?\[\]]+)*")
_GLOB = re.compile(r"[*?\[]")
_LONGEST = {"comment": 1000, "created_by": 100}


class SilenceError(ValueError):
    """What is wrong with a requested silence, naming the field (`matchers.outcome`, `for`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    created_at: datetime

    def state(self, now: datetime) -> str:
        """ "pending" (not started yet), "active" or "expired"."""
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, event: Event) -> bool:
        """Does every matcher match `event`? (An event without an agent matches no `agent`
        matcher, one without an outcome no `outcome` matcher.)"""
        m = self.matchers
        if "source" in m and not fnmatchcase(event.source, m["source"]):
            return False
        if "type" in m and not fnmatchcase(event.type, m["type"]):
            return False
        if "outcome" in m and (event.outcome is None or event.outcome.value != m["outcome"]):
            return False
        if "agent" in m:
            pattern = m["agent"].lower()
            names = (event.agent_id or "", event.agent_name or "")
            return any(n and fnmatchcase(n.lower(), pattern) for n in names)
        return True

    def describe(self) -> str:
        """ "agent=amazon-* outcome=failure": the matchers as `watcher silence list` shows them."""
        return " ".join(f"{k}={self.matchers[k]}" for k in MATCHERS if k in self.matchers)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": dict(self.matchers),
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "comment": self.comment,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "state": self.state(now),
        }


def new_silence(
    *,
    matchers: object,
    comment: object,
    created_by: object,
    now: datetime,
    duration: object = None,
    ends_at: object = None,
    starts_at: object = None,
    sources: Collection[str] | None = None,
) -> Silence:
    """A new silence from what a person asked for: `duration` ("2h") or `ends_at` (ISO 8601),
    from `starts_at` (default now). `sources`, when given, are the configured source names a
    plain `source` matcher must be one of. Raises `SilenceError` naming the first bad field."""
    start = _time("starts_at", starts_at) if starts_at is not None else now
    if (duration is None) == (ends_at is None):
        raise SilenceError("for", "give either for (a duration such as 2h) or ends_at")
    if duration is not None:
        try:
            seconds = parse_duration(duration)  # type: ignore[arg-type]
        except ValueError as err:
            raise SilenceError("for", str(err)) from None
        if seconds <= 0:
            raise SilenceError("for", "must be longer than 0s")
        try:
            end = start + timedelta(seconds=seconds)
        except OverflowError:
            raise SilenceError("for", "too long: it would end after the year 9999") from None
    else:
        end = _time("ends_at", ends_at)
        if end <= start:
            raise SilenceError("ends_at", "must be after the start")
    if end <= now:
        raise SilenceError("ends_at" if duration is None else "for", "must end in the future")
    return Silence(
        id=str(uuid.uuid4()),
        matchers=check_matchers(matchers, sources),
        starts_at=start,
        ends_at=end,
        comment=_text("comment", comment),
        created_by=_text("created_by", created_by),
        created_at=now,
    )


def check_matchers(value: object, sources: Collection[str] | None = None) -> dict[str, str]:
    """The matchers as {key: pattern}, at least one; raise `SilenceError` otherwise."""
    if not isinstance(value, Mapping):
        raise SilenceError("matchers", f"must be an object with some of {', '.join(MATCHERS)}")
    out: dict[str, str] = {}
    for key, pattern in value.items():
        field = f"matchers.{key}"
        if key not in MATCHERS:
            raise SilenceError(field, f"unknown matcher (one of {', '.join(MATCHERS)})")
        if pattern is None:
            continue
        if not isinstance(pattern, str) or not pattern.strip() or len(pattern) > 200:
            raise SilenceError(field, "must be a non-empty string of at most 200 characters")
        out[key] = _pattern(key, pattern.strip(), sources)
    if not out:
        raise SilenceError("matchers", f"give at least one of {', '.join(MATCHERS)}")
    return out


def _pattern(key: str, pattern: str, sources: Collection[str] | None) -> str:
    field = f"matchers.{key}"
    if key == "outcome" and pattern not in {o.value for o in Outcome}:
        raise SilenceError(field, f"must be one of {', '.join(o.value for o in Outcome)}")
    if key == "type" and not _TYPE.fullmatch(pattern):
        raise SilenceError(field, 'must be an event type or a glob ("run.finished", "run.*")')
    plain = not _GLOB.search(pattern)
    if key == "source" and sources is not None and plain and pattern not in sources:
        names = ", ".join(sorted(sources)) or "none"
        raise SilenceError(field, f'unknown source "{pattern}" (configured: {names})')
    return pattern


def _time(field: str, value: object) -> datetime:
    parsed = parse_iso(value) if isinstance(value, str) else None
    if parsed is None:
        raise SilenceError(field, "must be an ISO 8601 time, e.g. 2026-11-23T18:00:00Z")
    return parsed


def _text(field: str, value: object) -> str:
    longest = _LONGEST[field]
    if not isinstance(value, str) or not value.strip():
        raise SilenceError(field, "required: a non-empty string")
    if len(value) > longest:
        raise SilenceError(field, f"at most {longest} characters")
    return " ".join(value.split())
