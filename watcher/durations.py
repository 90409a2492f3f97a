"""Durations as people write and read them: "90s", "15m", "2h", "1d" in; "2m 41s" out."""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")


def parse_duration(text: str | float) -> float:
    """Seconds in "90s", "15m", "2h", "1d" (or a plain number of seconds); raise ValueError
    naming what is accepted otherwise."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if not math.isfinite(text):
            raise ValueError("must be a finite number of seconds")
        if text < 0:
            raise ValueError("must not be negative")
        return float(text)
    if isinstance(text, str):
        match = _DURATION.fullmatch(text.lower())
        if match:
            return float(match[1]) * _UNITS[match[2]]
    raise ValueError('not a duration (write e.g. "90s", "15m", "2h" or "1d")')


def duration_of(seconds: float | None) -> str:
    """ "2m 41s", "3h 5m", "4d 2h": the two largest units, for a person to read."""
    if seconds is None:
        return ""
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
