"""Mute windows: the hours a subscription does not want to be woken, in its own time zone.

A window is days, times, or both, as people write them (Alertmanager's `time_intervals`, said
in one string each):

    "Sat-Sun"             all of Saturday and Sunday
    "22:00-07:00"         every night: a range whose end comes before its start crosses midnight
    "Mon-Fri 22:00-07:00" weeknights: a night belongs to the day it starts on, so this one runs
                          from Monday 22:00 to Saturday 07:00, with the days off in between
    "Mon,Wed,Fri-Sun"     days may be listed and ranged ("Fri-Mon" wraps over the weekend)

Pure: the time zone is a `zoneinfo` name, local times are computed from UTC instants, so a
window follows daylight saving time the way a person expects.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY = 86400
_TIMES = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")
EXAMPLES = '"Sat-Sun", "22:00-07:00" or "Mon-Fri 22:00-07:00"'
LOOKAHEAD = 16
"""Windows followed one after another when looking for the end of a mute (a week of nights and
a weekend is ten): a mute that never ends is re-checked then."""


@dataclass(frozen=True, slots=True)
class Window:
    """Days (0 = Monday; empty: every day) and seconds of the day from `start` to `end`; an
    `end` at or before `start` crosses midnight into the next day."""

    text: str
    days: frozenset[int]
    start: int = 0
    end: int = _DAY

    def _on(self, weekday: int) -> bool:
        return not self.days or weekday in self.days

    def end_of(self, local: datetime) -> datetime | None:
        """When the occurrence of this window that covers `local` ends (local time), or None
        when it does not cover it."""
        second = local.hour * 3600 + local.minute * 60 + local.second
        day = local.weekday()
        midnight = datetime.combine(local.date(), time(0), tzinfo=local.tzinfo)
        if self.start < self.end:
            if self._on(day) and self.start <= second < self.end:
                return midnight + timedelta(seconds=self.end)
            return None
        if self._on(day) and second >= self.start:  # tonight's, ending tomorrow
            return midnight + timedelta(days=1, seconds=self.end)
        if self._on((day - 1) % 7) and second < self.end:  # last night's, ending this morning
            return midnight + timedelta(seconds=self.end)
        return None


def parse_window(text: str) -> Window:
    """A window from its text; raise ValueError with a one-line reason otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"must be a string such as {EXAMPLES}")
    parts = text.lower().split()
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"not a mute window (write e.g. {EXAMPLES})")
    days: frozenset[int] = frozenset()
    start, end = 0, _DAY
    if ":" not in parts[0]:
        days = _days(parts.pop(0))
    if parts:
        start, end = _times(parts.pop(0))
    if parts:
        raise ValueError(f"not a mute window (write e.g. {EXAMPLES})")
    return Window(text.strip(), days, start, end)


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.split(","):
        first, dash, last = item.partition("-")
        a = _day(first)
        b = _day(last) if dash else a
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def _day(name: str) -> int:
    """0 for "mon", "Monday", "mond" …: a day's name or its start, three letters at least."""
    for index, full in enumerate(_FULL):
        if len(name) >= 3 and full.startswith(name):
            return index
    raise ValueError(f'unknown day "{name[:20]}" (Mon, Tue, Wed, Thu, Fri, Sat, Sun)')


def _times(text: str) -> tuple[int, int]:
    match = _TIMES.fullmatch(text)
    if match is None:
        raise ValueError(f'"{text[:20]}" is not a time range HH:MM-HH:MM (e.g. "22:00-07:00")')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f'"{text}": hours 00-23 (24:00 as an end), minutes 00-59')
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if start == end % _DAY and end != _DAY:
        raise ValueError(f'"{text}": starts when it ends (write "00:00-24:00" for a whole day)')
    return start, end


def zone(name: str) -> ZoneInfo:
    """The time zone called `name`; ValueError naming what is accepted otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'unknown time zone "{name[:40]}" (an IANA name: "Europe/Berlin", '
                         '"UTC")') from None  # fmt: skip


class Mute:
    """A subscription's mute windows in its time zone."""

    def __init__(self, windows: Sequence[str], timezone: str = "UTC") -> None:
        self.windows = [parse_window(w) for w in windows]
        self.tz = zone(timezone)
        self.text = ", ".join(w.text for w in self.windows) + f" ({timezone})"

    def active(self, now: datetime) -> bool:
        local = now.astimezone(self.tz)
        return any(w.end_of(local) is not None for w in self.windows)

    def until(self, now: datetime) -> datetime:
        """The first moment from `now` on that no window covers (UTC); `now` if none does.
        Windows that touch or overlap are followed one after another."""
        at = now
        for _ in range(LOOKAHEAD):
            local = at.astimezone(self.tz)
            ends = [e for w in self.windows if (e := w.end_of(local)) is not None]
            if not ends:
                return at
            at = max(ends).astimezone(UTC)
        return at
