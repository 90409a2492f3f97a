"""Defensive readers for the fields of a platform's JSON, shared by the sources.

Each returns None for a value that is missing, of the wrong type or absurd, so a source can
build a snapshot from whatever it was given and skip only what it cannot identify.
"""

from __future__ import annotations

import json
import re
from typing import Any

from watcher.redact import redact

_TIMESPAN = re.compile(  # days: 8 digits at most, as in TimeSpan.MaxValue (10675199.02:48:05)
    r"(?P<sign>-)?(?:(?P<days>\d{1,8})[.:])?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})"
    r"(?:\.(?P<frac>\d{1,9}))?"
)


def as_id(value: Any) -> str | None:
    """An identifier: an int, or a non-empty string of at most 128 characters, as text (with any
    registered secret masked, as in `as_text`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= 128:
        return redact(value.strip())
    return None


_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._~-]{0,127}")


def is_path_segment(value: str) -> bool:
    """Can this id from a platform's answer go into a URL path as one segment, as it is?
    (Letters, digits, `-_.~`, not starting with a dot: no `/`, `..`, `?`, `%` or spaces.)"""
    return _SEGMENT.fullmatch(value) is not None


def as_text(value: Any, limit: int = 2000) -> str | None:
    """A non-blank string, cut to `limit` characters, with any registered secret masked (a
    platform may quote our key in a message, which would then be stored and sent on)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = redact(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_number(value: Any) -> float | None:
    """A non-negative, finite, plausible number (seconds, sizes)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if 0 <= number < 1e12 else None


def as_count(value: Any) -> int | None:
    """A non-negative integer count."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value < 2**53 else None


def parse_timespan(value: Any) -> float | None:
    """Seconds in a .NET TimeSpan as the ACC writes it: `[-][d.]hh:mm:ss[.fffffff]`
    ("00:00:08.9677836" → 8.9677836; "1.02:03:04" → 93784.0). A plain number is taken as
    seconds. Negative, malformed or out-of-range values → None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return as_number(value)
    if not isinstance(value, str):
        return None
    match = _TIMESPAN.fullmatch(value.strip())
    if match is None or match["sign"]:
        return None
    hours, minutes, seconds = int(match["h"]), int(match["m"]), int(match["s"])
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    frac = match["frac"]
    total = (
        int(match["days"] or 0) * 86400
        + hours * 3600
        + minutes * 60
        + seconds
        + (int(frac) / 10 ** len(frac) if frac else 0.0)
    )
    return as_number(total)


def error_text(value: Any, limit: int = 500) -> str | None:
    """A one-line explanation from an error field that may be a string or an object
    (`{"message": …}`, `{"detail": …}`, `{"error": …}`, `{"type": …}`, or anything else,
    shown as compact JSON). Empty objects and blanks → None."""
    if isinstance(value, str):
        text = " ".join(value.split())
        return as_text(text, limit)
    if isinstance(value, dict) and value:
        for key in ("message", "detail", "error", "reason", "title", "type"):
            found = value.get(key)
            if isinstance(found, str) and found.strip():
                return as_text(" ".join(found.split()), limit)
            if isinstance(found, dict) and found:
                return error_text(found, limit)
        try:
            return as_text(json.dumps(value, separators=(",", ":"), sort_keys=True), limit)
        except (TypeError, ValueError):
            return None
    return None
