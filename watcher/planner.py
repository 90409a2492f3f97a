"""Which agents' runs to list in a poll, within what the request budget allows. Pure.

Each agent is a `Track`: when its runs were last listed, whether it has a run known to be
active, whether its change hint moved since (Sequentum Cloud's agent listing carries each
agent's last run status and last activity). Agents are listed in this order of priority:

1. **changed** — the hint moved: there is news for certain;
2. **active** — a run is pending or running: listed every `poll_interval_active`, the most
   overdue first;
3. **sweep** — everything else, the least recently listed first, each at least every
   `idle` seconds (`sweep_interval` where hints work, `poll_interval` where they do not): the
   safety net for whatever the hints miss.

(DESIGN.md puts active before changed. Changed comes first here: an agent whose hint moved
certainly has news — a flash run that started and finished between two polls among them —
while an active agent whose hint did not move most likely has none. With the budget to spare
the order does not matter; when it is short, this one spends it where the news is.)

Enrichment of new failures (diagnostics, failed steps) is not planned here: the poller spends
what is left after the changed and active listings on it, before the sweep.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from watcher.models import Agent


class Reason(StrEnum):
    CHANGED = "changed"
    ACTIVE = "active"
    SWEEP = "sweep"


FIRST_ROUND = (Reason.CHANGED, Reason.ACTIVE)
SECOND_ROUND = (Reason.SWEEP,)


@dataclass(frozen=True, slots=True)
class Track:
    """What the planner knows of one agent."""

    agent: Agent
    listed_at: float | None = None
    """When its runs were last listed by this process (None: not yet)."""
    active: bool = False
    """It has a run known to be pending or running (or, never listed, its hint says so)."""
    changed: bool = False
    """Its change hint moved since its runs were last listed."""


@dataclass(frozen=True, slots=True)
class Cadence:
    active: float
    """Seconds between two listings of an agent with an active run."""
    idle: float
    """Seconds between two listings of any other agent (the sweep)."""
    slack: float = 0.0
    """A listing this much early still counts as due (a scheduler tick arrives a little early)."""


@dataclass(slots=True)
class Plan:
    listings: list[tuple[Agent, Reason]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    """Agents that were due but not planned, by why ("budget")."""

    @property
    def agents(self) -> list[Agent]:
        return [agent for agent, _ in self.listings]


def plan(
    tracks: Iterable[Track],
    *,
    now: float,
    allowance: int | None,
    cadence: Cadence,
    reasons: tuple[Reason, ...] = (*FIRST_ROUND, *SECOND_ROUND),
    force: bool = False,
) -> Plan:
    """The listings to make now, in priority order, at most `allowance` of them (None: no
    limit). Only the `reasons` given are planned. `force` makes every agent due (`watcher
    once`). `tracks` come in sweep order: ties in "least recently listed" keep it."""
    due: dict[Reason, list[Track]] = {reason: [] for reason in Reason}
    for track in tracks:
        reason = _why_due(track, now, cadence, force)
        if reason is not None and reason in reasons:
            due[reason].append(track)
    result = Plan()
    left = allowance
    for reason in reasons:
        ordered = sorted(due[reason], key=_least_recent)
        take = ordered if left is None else ordered[: max(0, left)]
        result.listings.extend((t.agent, reason) for t in take)
        if left is not None:
            left -= len(take)
            if len(take) < len(ordered):
                result.skipped["budget"] += len(ordered) - len(take)
    return result


def _why_due(track: Track, now: float, cadence: Cadence, force: bool) -> Reason | None:
    if track.changed:
        return Reason.CHANGED
    if track.active:
        return Reason.ACTIVE if force or _overdue(track, now, cadence.active, cadence) else None
    return Reason.SWEEP if force or _overdue(track, now, cadence.idle, cadence) else None


def _overdue(track: Track, now: float, interval: float, cadence: Cadence) -> bool:
    return track.listed_at is None or now - track.listed_at >= interval - cadence.slack


def _least_recent(track: Track) -> float:
    return float("-inf") if track.listed_at is None else track.listed_at


@dataclass(frozen=True, slots=True)
class Coverage:
    """What a configuration promises (`watcher check`)."""

    detect: float
    """Seconds, at worst, from a change to its listing: for a hinted change, the next cycle;
    without hints, a full sweep."""
    sweep: float
    """Seconds in which every agent's runs are listed at least once."""


def coverage(
    *,
    agents: int,
    per_minute: int,
    cycle: float,
    idle: float,
    hinted: bool,
    listing_cost: int = 1,
    jitter: float = 0.0,
) -> Coverage:
    """The worst-case detection latency and the full sweep period of `agents` agents polled
    every `cycle` seconds (idle ones every `idle`), within `per_minute` requests (0: no limit),
    one of which each cycle spends on the change hints when there are hints."""
    sweep = idle
    if per_minute > 0:
        overhead = 60 / cycle if hinted else 0.0  # a page of hints a cycle
        spare = max(per_minute - overhead, 1.0)
        sweep = max(idle, agents * listing_cost / spare * 60)
    return Coverage(detect=cycle + jitter if hinted else sweep + jitter, sweep=sweep)
