"""Logging: structlog for watcher's own lines, with stdlib logging (aiohttp, apprise,
APScheduler) routed through the same processors, so every line has one format.

JSON lines by default (journald, container log collectors); a readable console renderer on a
TTY or with `log_format = "console"`. Every line passes through `redact`, tracebacks are
rendered without local variables, and apprise is kept at INFO or above (at DEBUG its Slack
plugin logs webhook tokens).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from watcher.events import Event, EventType
from watcher.redact import redact_value

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Which level each event type is logged at (INFO when not listed): watcher's own trouble is an
# error; a run that failed is the platform's news, a warning; a `run.finished` is logged at the
# level of its outcome (OUTCOME_LEVELS).
EVENT_LEVELS: dict[str, int] = {
    EventType.SOURCE_FAILED: logging.ERROR,
    EventType.NOTIFICATION_FAILED: logging.ERROR,
    EventType.OUTPUT_FAILED: logging.ERROR,
    EventType.RUN_UNKNOWN_STATUS: logging.WARNING,
    EventType.RUN_WARNING: logging.WARNING,
    EventType.AGENT_FLAPPING: logging.WARNING,
}
OUTCOME_LEVELS = {"failure": logging.WARNING}


def _redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: redact_value(v) for k, v in event_dict.items()}


def _drop_none(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event_dict.items() if v is not None}


# Fields a person reading the console does not need on every event line (the JSON log has all).
_CONSOLE_QUIET = frozenset(
    {"id", "ts", "source_kind", "phase", "status_code", "started_at", "ended_at", "requests",
     "pages", "exported", "logger"}
)  # fmt: skip


def _compact_events(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if event_dict.get("logger") != "watcher.events":
        return event_dict
    out = {k: v for k, v in event_dict.items() if k not in _CONSOLE_QUIET}
    if out.get("attempt") == 0:
        del out["attempt"]
    return out


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Set up logging for the whole process. Safe to call again (tests, reload)."""
    stream = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if console:
        final: list[Any] = [
            _drop_none,
            _compact_events,
            _redact,
            structlog.dev.ConsoleRenderer(
                colors=stream.isatty(),
                sort_keys=False,
                exception_formatter=structlog.dev.plain_traceback,  # never with locals
            ),
        ]
    else:
        final = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            _redact,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    root.setLevel(numeric)
    logging.getLogger("apprise").setLevel(max(logging.INFO, numeric))
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, numeric))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def log_event(event: Event, logger: Any = None) -> None:
    """The one log line of an event: its type as the message, its fields as keys."""
    logger = logger or structlog.get_logger("watcher.events")
    fields = {k: v for k, v in event.to_dict().items() if k != "type" and v is not None}
    counts = fields.pop("counts", None)
    if counts:
        fields.update({k: v for k, v in counts.items() if v is not None})
    logger.log(level_of(event), event.type, **fields)


def level_of(event: Event) -> int:
    """The level of an event's log line: see EVENT_LEVELS."""
    if event.type == EventType.RUN_FINISHED and event.outcome is not None:
        return OUTCOME_LEVELS.get(event.outcome.value, logging.INFO)
    return EVENT_LEVELS.get(event.type, logging.INFO)
