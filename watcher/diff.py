"""The diff engine: what a new listing means, given what watcher remembered of each run.

Pure: no I/O and no clock (`now` is passed in). The rules (DESIGN.md, "Diff semantics"):

- An agent seen for the first time is *baselined*: its runs are recorded and nothing is emitted
  for them — history that existed before watcher started is not news. An agent that appears
  later (a wildcard source discovering a new agent) is baselined with `since`, the time of the
  source's previous successful poll: runs that started or ended after it are news as usual.
- A new run emits `run.discovered`; if it is already finished (a short run that started and
  ended between two polls) also `run.finished`; if its status is not in the map,
  `run.unknown_status`.
- A changed raw status emits `run.status_changed`, plus:
  - `run.finished` when the run reaches a finished status and this attempt has not finished yet;
  - `run.reopened` when a run that had finished becomes pending or running again (a Failure
    restarted in place): the attempt number goes up and its next finish is news again;
  - `run.unknown_status` when the new status is not in the map;
  - `run.warning` when the run is still active but its status says it is already failing
    (ACC job "In Progress With Failure"): an early warning, before the finish.
- A finished run whose status changes to another one with the same outcome (Cloud Failure(6)
  archived as Failed(7)) emits only `run.status_changed`: one outcome, one finish. A finished run
  whose outcome changes without passing through an active status counts as reopened and
  finished again (it was, between two polls).
- A run that leaves the listing emits nothing; the same listing twice emits nothing.

Event ids hash (source, agent, run, type, outcome or status, attempt), so the same fact always
gets the same id and a replay is recognised downstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from watcher.events import Event, EventType, run_event
from watcher.runs import Phase, RunSnapshot, RunState


@dataclass(frozen=True, slots=True)
class Change:
    """A run whose remembered state must be written: its new snapshot and state."""

    snapshot: RunSnapshot
    state: RunState


@dataclass(slots=True)
class DiffResult:
    events: list[Event] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    def extend(self, other: DiffResult) -> None:
        self.events.extend(other.events)
        self.changes.extend(other.changes)


def state_of(
    snap: RunSnapshot, *, attempt: int = 0, outcome_from: RunState | None = None
) -> RunState:
    """The state to remember for `snap`. `outcome` is the outcome this attempt finished with,
    kept while the run wanders through an unknown status so it cannot finish twice."""
    outcome = snap.outcome if snap.phase is Phase.FINISHED else None
    if outcome is None and snap.phase is Phase.UNKNOWN and outcome_from is not None:
        outcome = outcome_from.outcome
    return RunState(
        status=snap.status,
        status_code=snap.status_code,
        phase=snap.phase,
        outcome=outcome,
        attempt=attempt,
        digest=snap.digest(),
    )


def diff_agent(
    previous: Mapping[str, RunState] | None,
    listing: Iterable[RunSnapshot],
    *,
    now: datetime,
    source_kind: str,
    since: datetime | None = None,
) -> DiffResult:
    """Compare one agent's listing with what was remembered of its runs.

    `previous` is None when the agent has never been seen: the listing becomes its baseline and
    no events are emitted, except for runs that started or ended after `since` (when given; a
    run that ended at that very moment was already there when it was taken: history). The
    listing is processed in the order given (oldest first reads best).
    """
    result = DiffResult()
    seen: set[str] = set()
    for snap in listing:
        if snap.run_id in seen:  # a listing that repeats a run: the first entry wins
            continue
        seen.add(snap.run_id)
        if previous is None:
            if since is not None and _happened_since(snap, since):
                _new_run(snap, now, source_kind, result)
            else:
                result.changes.append(Change(snap, state_of(snap)))
            continue
        prev = previous.get(snap.run_id)
        if prev is None:
            _new_run(snap, now, source_kind, result)
        else:
            _known_run(prev, snap, now, source_kind, result)
    return result


def _new_run(snap: RunSnapshot, now: datetime, kind: str, out: DiffResult) -> None:
    types = [EventType.RUN_DISCOVERED]
    if snap.phase is Phase.FINISHED:
        types.append(EventType.RUN_FINISHED)
    elif snap.phase is Phase.UNKNOWN:
        types.append(EventType.RUN_UNKNOWN_STATUS)
    elif snap.warning:
        types.append(EventType.RUN_WARNING)
    out.events.extend(run_event(t, snap, source_kind=kind, ts=now, attempt=0) for t in types)
    out.changes.append(Change(snap, state_of(snap)))


def _known_run(
    prev: RunState, snap: RunSnapshot, now: datetime, kind: str, out: DiffResult
) -> None:
    digest = snap.digest()
    if digest == prev.digest:
        return
    if (snap.status, snap.status_code) == (prev.status, prev.status_code):
        # Same status, other details moved (counts, end time, message): remember them quietly.
        out.changes.append(Change(snap, _replace_digest(prev, digest)))
        return

    attempt = prev.attempt
    types = [EventType.RUN_STATUS_CHANGED]
    if snap.phase is Phase.FINISHED:
        if prev.outcome != snap.outcome:
            if prev.outcome is not None:
                attempt += 1  # ended again, another way: it was reopened between two polls
            types.append(EventType.RUN_FINISHED)
    elif snap.phase.active:
        if prev.outcome is not None:
            attempt += 1
            types.append(EventType.RUN_REOPENED)
        if snap.warning:
            types.append(EventType.RUN_WARNING)
    else:
        types.append(EventType.RUN_UNKNOWN_STATUS)
    for t in types:
        out.events.append(
            run_event(
                t,
                snap,
                source_kind=kind,
                ts=now,
                attempt=attempt,
                previous_status=prev.status,
                id_parts=(prev.status,) if t is EventType.RUN_STATUS_CHANGED else (),
            )
        )
    out.changes.append(Change(snap, state_of(snap, attempt=attempt, outcome_from=prev)))


def _happened_since(snap: RunSnapshot, since: datetime) -> bool:
    moment = snap.ended_at or snap.started_at
    return moment is not None and moment > since


def _replace_digest(prev: RunState, digest: str) -> RunState:
    return RunState(prev.status, prev.status_code, prev.phase, prev.outcome, prev.attempt, digest)
