"""The outputs sink: when a run finishes with a configured outcome, its files are fetched.

The dispatcher's view of `watcher.sinks.fetcher.Fetcher`. It accepts `run.finished` events
whose outcome the source's `[outputs]` rules name, from sources that have outputs. A fetch that
failed for a temporary reason (the platform down, a download cut off or stalled, a full disk)
raises a retryable `DeliveryError` after one clear error line, so the dispatcher retries it
with backoff until `max_age` (then `output.failed`); the files already in place are not fetched
again. A permanent failure (a file over `max_file_bytes`, a hostile archive, an unknown run) is
recorded at once as `output.failed`. The sink produces `output.fetched` (files, bytes, path,
output_paths) and `output.failed` (reason) with each settled run, as the alert channels produce
their notifications.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime

import structlog

from watcher.events import Event, EventType, follow_up
from watcher.sinks.base import DeliveryError, Done, Sink
from watcher.sinks.fetcher import Fetcher, FetchError, FetchResult

log = structlog.get_logger("watcher.outputs")


class OutputsSink(Sink):
    """Fetches the outputs of each accepted `run.finished` event (see the module docstring)."""

    name = "outputs"

    def __init__(self, fetcher: Fetcher, *, clock: Callable[[], datetime]) -> None:
        self.fetcher = fetcher
        self.config = fetcher.config
        self.max_age = fetcher.config.max_age
        self._clock = clock

    def accepts(self, event: Event) -> bool:
        if event.type != EventType.RUN_FINISHED or event.outcome is None:
            return False
        if not event.agent_id or not event.run_id:
            return False
        rules = self.config.for_source(event.source)
        if not rules.enabled or event.outcome.value not in (rules.on or ()):
            return False
        source = self.fetcher.source(event.source)
        return source is not None and source.has_outputs

    async def deliver(self, events: Sequence[Event], done: Done) -> None:
        async def one(event: Event) -> str | None:
            why, produced = await self._one(event)
            if why is None:
                done([event.id], produced)  # this run is settled, whatever happens to the others
            return why

        problems = await asyncio.gather(*(one(e) for e in events))
        failed = [why for why in problems if why is not None]
        if failed:
            more = f" (and {len(failed) - 1} more run(s))" if len(failed) > 1 else ""
            raise DeliveryError(failed[0] + more)

    async def _one(self, event: Event) -> tuple[str | None, list[Event]]:
        """Fetch one run's outputs: the reason to try again later (None when it is done), and
        the events that say what came of it."""
        assert event.agent_id is not None and event.run_id is not None
        where = f"{event.source}/{event.agent_id}/{event.run_id}"
        try:
            result = await self.fetcher.fetch(event.source, event.agent_id, event.run_id)
        except FetchError as err:
            if err.retryable:
                log.error("outputs not fetched; will retry", run=where, error=str(err))
                return f"{where}: {err}", []
            return None, [self._about(event, EventType.OUTPUT_FAILED, reason=str(err))]
        retry = result.retryable
        if retry:
            reason = "; ".join(f"{f.name}: {f.reason}" for f in retry[:3])
            log.error("outputs incomplete; will retry", run=where, error=reason)
            return f"{where}: {reason}", []
        return None, self._summary(event, result)

    async def abandoned(self, events: Sequence[Event], error: str) -> list[Event]:
        """The dispatcher gave up (max_age): say so once per run."""
        return [self._about(e, EventType.OUTPUT_FAILED, reason=f"gave up: {error}") for e in events]

    def _summary(self, event: Event, result: FetchResult) -> list[Event]:
        """`output.fetched` for what is in place, `output.failed` for what never will be."""
        placed = result.in_place
        path = str(result.path) if result.path is not None else None
        size = sum(f.size for f in placed)
        if result.path is None:
            message = f"no file matched the outputs rules ({result.listed} listed)"
        else:
            message = f"{len(placed)} file(s), {size} bytes in {path}"
        out = [
            self._about(
                event,
                EventType.OUTPUT_FETCHED,
                message=message,
                files=len(placed),
                bytes=size,
                fetched=sum(1 for f in placed if f.status == "fetched"),
                path=path,
                output_paths=[str(f.path) for f in placed],
            )
        ]
        if result.failed:
            reason = "; ".join(f"{f.name}: {f.reason}" for f in result.failed)
            out.append(
                self._about(
                    event,
                    EventType.OUTPUT_FAILED,
                    reason=reason,
                    path=path,
                    failed_files=[f.name for f in result.failed],
                )
            )
        return out

    def _about(
        self, event: Event, type: EventType, message: str | None = None, **data: object
    ) -> Event:
        if message is None and "reason" in data:
            message = str(data["reason"])
        return follow_up(event, type, by=self.name, ts=self._clock(), message=message, **data)
