"""Automatic retries of failed runs (`retry = { max, after, on }` in a rule): asked of the
platform at most `max` times per run, `after` each failure, never for a stopped or skipped run.

Never twice for one attempt, across restarts too: each retry is a row in the state file,
written when the failure is seen (scheduled) and again, with the `run.retry_requested` event,
*before* the request is sent (sending). A row still sending at a start is a request whose
answer was lost — the platform may have done it — so it is marked unknown and never sent
again. A platform that starts a new run for a retry (Sequentum Cloud, the automation-runs API)
gives its id; that run's failure counts as the next try of the first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from watcher.codec import iso
from watcher.errors import SourceError, SourceThrottled, SourceUnavailable
from watcher.events import Event, EventType, event_id, with_data
from watcher.redact import redact
from watcher.rules import RuleBook
from watcher.rulestore import RetryRow
from watcher.runs import Outcome
from watcher.sources.base import Source
from watcher.store import Store

log = structlog.get_logger("watcher.retry")

Record = Callable[[RetryRow, list[Event]], None]
"""Write a retry's row and its events in one transaction (the poller's commit)."""

THROTTLED_WAIT = 60.0
"""Seconds a retry the platform refused with 429 (not done) waits before it is asked again."""


class Retrier:
    def __init__(
        self, source: Source, store: Store, book: RuleBook, *, clock: Callable[[], datetime]
    ) -> None:
        self.source = source
        self.store = store
        self.book = book
        self.rows: dict[tuple[str, int], RetryRow] = {}
        if not any(rule.retry for rule in book.rules):
            return
        for row in store.retries(source.name):
            if row.state == "sending":  # its answer was lost in a crash: done or not, unknown
                log.warning("a retry's outcome is unknown; it is not asked again",
                            source=source.name, run_id=row.run_id, try_=row.try_)  # fmt: skip
                row = replace(row, state="unknown")
                now = clock()
                store.commit(source=source.name, retries=[row], now=now, now_ts=now.timestamp())
            self.rows[(row.run_id, row.try_)] = row

    def plan(self, events: list[Event], now: datetime) -> list[RetryRow]:
        """For each new failure a rule retries: schedule the next try (and say so in the
        failure's event), or, tries spent, say how many there were. Returns the rows to write
        with the events; they count once `committed`."""
        planned: list[RetryRow] = []
        for index, event in enumerate(events):
            if event.type != EventType.RUN_FINISHED or not event.agent_id or not event.run_id:
                continue
            if event.outcome is not Outcome.FAILURE:
                continue
            rule = self.book.rule_for(self.source.name, event.agent_id, event.agent_name)
            if rule is None or rule.retry is None or "failure" not in rule.retry.on:
                continue
            first = self._first_of(event.run_id)
            tries = sum(1 for run, _ in self.rows if run == first)
            if tries >= rule.retry.max:
                events[index] = with_data(event, retries_tried=tries)
                continue
            due = now + timedelta(seconds=rule.retry.after)
            row = RetryRow(
                self.source.name, event.agent_id, first, tries + 1, due.timestamp(), "scheduled"
            )
            planned.append(row)
            events[index] = with_data(
                event,
                retry={"try": row.try_, "of": rule.retry.max, "at": iso(due)},
                retries_tried=tries,
            )
        return planned

    def committed(self, rows: list[RetryRow]) -> None:
        """The rows `plan` gave were written: from now on they count."""
        for row in rows:
            self.rows[(row.run_id, row.try_)] = row

    def due(self, now: datetime) -> list[RetryRow]:
        moment = now.timestamp()
        return [r for r in self.rows.values() if r.state == "scheduled" and r.due_at <= moment]

    async def send(self, row: RetryRow, now: datetime, record: Record) -> None:
        """Ask the platform, once: the row (sending) and its `run.retry_requested` event are
        committed first; then the request; then what came of it."""
        sending = replace(row, state="sending")
        record(sending, [self._requested(row, now)])
        self.rows[(row.run_id, row.try_)] = sending
        try:
            new_run = await self.source.retry(row.agent_id, row.run_id)
        except SourceThrottled:  # refused before it was done: ask again later
            done = replace(row, due_at=now.timestamp() + THROTTLED_WAIT)
        except SourceUnavailable as err:
            state = "unknown" if err.http_status is None else "failed"
            done = replace(sending, state=state, detail=redact(err.detail))
            log.error("retry not confirmed", source=self.source.name, run_id=row.run_id,
                      state=state, error=done.detail)  # fmt: skip
        except SourceError as err:
            done = replace(sending, state="failed", detail=redact(err.detail))
            log.error("retry refused", source=self.source.name, run_id=row.run_id,
                      error=done.detail)  # fmt: skip
        else:
            done = replace(sending, state="sent", new_run_id=new_run)
        self.rows[(row.run_id, row.try_)] = done
        record(done, [])

    def _first_of(self, run_id: str) -> str:
        """The run a retried run retries (itself, for a run no retry started)."""
        for row in self.rows.values():
            if row.new_run_id == run_id:
                return row.run_id
        return run_id

    def _requested(self, row: RetryRow, now: datetime) -> Event:
        return Event(
            id=event_id(
                self.source.name, row.agent_id, row.run_id, EventType.RUN_RETRY_REQUESTED, row.try_
            ),
            type=EventType.RUN_RETRY_REQUESTED,
            ts=now,
            source=self.source.name,
            source_kind=self.source.kind,
            agent_id=row.agent_id,
            run_id=row.run_id,
            message=f"retry {row.try_} requested of the platform",
            data=(("try", row.try_),),
        )
