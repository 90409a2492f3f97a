"""When a failing source is news: `source.failed` only once it has failed `source_failed_after`.

healthchecks.io's grace period, for the platforms watcher reads: a poll that fails — a
timeout, a 502 from a proxy being redeployed — is logged, and the source counts as failing
(/readyz, `watcher_source_up`) at once; but `source.failed` is said only when it is still
failing `source_failed_after` later (3 minutes by default), and `source.recovered` only after a
`source.failed`. A key the platform refuses (401, 403) is said at once: waiting cannot mend
it. A blip that recovers sooner leaves two log lines and no alert. The time it
began failing is stored with its health, so a restart in the middle of an outage neither
forgets it nor alerts it twice.

While a source fails, the run events it still produces (listings of other agents that worked)
carry `source_failing_since`, so that their alerts say the picture may be incomplete.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from watcher.codec import iso
from watcher.durations import duration_of
from watcher.errors import SourceAuthError, SourceError
from watcher.events import Event, EventType, source_event, with_data
from watcher.redact import redact
from watcher.sourcestate import SourceHealth

log = structlog.get_logger("watcher.poller")

DEFAULT_AFTER = 180.0
"""`source_failed_after` when the config gives none (a `SourceConfig` built in code)."""


def health_change(
    health: SourceHealth,
    errors: list[SourceError],
    now: datetime,
    *,
    source: str,
    kind: str,
    after: float | None,
) -> tuple[SourceHealth | None, list[Event]]:
    """The source's health after a poll that ended with `errors` — None when it is unchanged —
    and the events that say so."""
    after = DEFAULT_AFTER if after is None else after
    if any(isinstance(e, SourceAuthError) for e in errors):
        after = 0.0  # a refused key is no blip
    if errors:
        if health.failing and not health.pending:
            return None, []  # already said
        since = health.since if health.failing and health.since else now
        if (now - since).total_seconds() < after:
            if health.failing:
                return None, []
            log.warning("source failing; source.failed follows if it lasts", source=source,
                        error=_line(errors), after_s=after)  # fmt: skip
            return SourceHealth(True, now, _line(errors), pending=True), []
        return SourceHealth(True, since, _line(errors)), [_failed(errors, since, now, source, kind)]
    if not health.failing:
        return None, []
    down = (now - health.since).total_seconds() if health.since else None
    if health.pending:
        log.info("source works again", source=source, down_s=down)
        return SourceHealth(False), []
    return SourceHealth(False), [_recovered(health, down, now, source, kind)]


def note_failing(events: list[Event], health: SourceHealth) -> None:
    """While the source fails, give its run events `source_failing_since` (in place)."""
    if not health.failing:
        return
    since = iso(health.since)
    for index, event in enumerate(events):
        if event.run_id is not None:
            events[index] = with_data(event, source_failing_since=since)


def _line(errors: list[SourceError]) -> str:
    return redact(str(errors[0]))


def _failed(
    errors: list[SourceError], since: datetime, now: datetime, source: str, kind: str
) -> Event:
    first = errors[0]
    failing = (now - since).total_seconds()
    message = redact(first.detail)
    if failing >= 1:
        message += f" (failing for {duration_of(failing)})"
    return source_event(
        EventType.SOURCE_FAILED,
        source=source,
        source_kind=kind,
        ts=now,
        message=message,
        id_parts=(iso(since),),
        error=first.kind,
        http_status=first.http_status,
        failed_agent_id=first.agent_id,
        failed_requests=len(errors),
        failing_since=iso(since),
    )


def _recovered(
    health: SourceHealth, down: float | None, now: datetime, source: str, kind: str
) -> Event:
    return source_event(
        EventType.SOURCE_RECOVERED,
        source=source,
        source_kind=kind,
        ts=now,
        message=f"working again after {down:.0f}s" if down is not None else None,
        id_parts=(iso(health.since),),
        down_s=down,
    )
