"""How watcher writes a moment or a JSON value as text, and reads a moment back.

One place, so that the state file, the events file, the webhooks and the pages agree: a moment
is ISO 8601 in UTC with a `Z` (`iso`), and `parse_iso` reads what the platforms send (naive
times, offsets, .NET's seven fractional digits, `DateTime.MinValue` for "never"). JSON that is
stored or signed is compact (`dumps_compact`). Pure: nothing here does I/O.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson


def dumps_compact(data: Any) -> str:
    """Compact JSON: orjson, for speed; the standard library for what orjson refuses (integers
    beyond 64 bits, lone surrogates). A str: orjson's bytes keep kilobytes of spare capacity."""
    try:
        return orjson.dumps(data).decode()
    except TypeError:
        return json.dumps(data, separators=(",", ":"))


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is UTC:  # the common case, fast: what parse_iso returns
        return value.isoformat().replace("+00:00", "Z")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(value: Any) -> datetime | None:
    """Parse an ISO 8601 timestamp; naive values are taken as UTC. Unparseable → None."""
    if not value or not isinstance(value, str):
        return None
    parsed: datetime | None
    try:  # the common case, fast: "2024-12-18T13:08:49.748151Z"
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = _parse_iso_slowly(value)
        if parsed is None:
            return None
    try:
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        elif parsed.utcoffset():
            parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if parsed.year <= 1:  # .NET's DateTime.MinValue stands for "never"
        return None
    return parsed


def _parse_iso_slowly(value: str) -> datetime | None:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # .NET emits up to 7 fractional digits; Python accepts at most 6.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        if digits > 6:
            rest = rest[:6] + rest[digits:]
        text = f"{head}.{rest}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
