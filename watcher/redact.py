"""Keeps secrets out of every line watcher writes.

Sources register their API keys and sinks their channel URLs' tokens at start-up; `redact()` is
applied to log lines, event messages and error texts before they leave the process. A secret
that never reaches a string cannot leak, so modules still avoid formatting headers or URLs with
credentials; this is the net under them.
"""

from __future__ import annotations

import re

_MIN_LEN = 4
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

MASK = "***"


def register(*secrets: str | None) -> None:
    """Remember secrets to mask. Very short values are ignored (they would mask ordinary words)."""
    global _pattern
    added = {s for s in secrets if s and len(s) >= _MIN_LEN} - _secrets
    if added:
        _secrets.update(added)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    if _pattern is None or not text:
        return text
    return _pattern.sub(MASK, text)


def redact_value(value: object) -> object:
    """Redact strings inside plain data (dicts, lists, tuples) — used on log event dicts."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def registered() -> frozenset[str]:
    return frozenset(_secrets)
