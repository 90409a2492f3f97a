"""Which agents' runs to list in a poll, within what the request budget allows. Pure.

Each agent is a `Track`: when its runs were last listed, whether it has a run known to be
active, whether its change hint moved since (Sequentum Cloud's agent listing carries each
agent's last run status and last activity). A poll lists in two rounds, enrichment of the new
finishes (diagnostics, failed steps) between them:

Where the platform gives hints (`HINTED`):
1. **changed** — the hint moved: there is news for certain. Those whose last run settled (a
   finish, likely to alert) first, then the oldest change first.
2. **sweep**, then **active** — every other agent is listed at least every `sweep_interval`
   (the safety net for whatever the hints miss), the least recently listed first; what the
   budget leaves goes to agents with a run in progress, every `poll_interval_active`, the most
   overdue first. An agent with a run in progress that this process has never listed comes
   before both (at a first start, after the changed: those first).

Without hints (`SWEPT`), every change must be found by listing, so active agents (every
`poll_interval_active`) and the others (every `poll_interval`) share the budget fairly: the
most overdue first, measured against each one's own interval.

(DESIGN.md orders hints, active, changed, enrichment, sweep. With hints, an active agent whose
hint did not move has no news — the hint moves with any change of any of its runs — so it
comes last here: measured against a platform that allows 100 requests a minute, 1,000 agents
of which 50 are running left nothing for the sweep and for diagnostics the other way round.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from watcher.runs import Agent


class Reason(StrEnum):
    CHANGED = "changed"
    ACTIVE = "active"
    SWEEP = "sweep"


@dataclass(frozen=True, slots=True)
class Rounds:
    """The reasons a poll's two rounds list agents for, and whether the second is fair."""

    first: tuple[Reason, ...]
    second: tuple[Reason, ...]
    fair: bool
    """The second round orders its agents by how overdue each is, whatever the reason."""


HINTED = Rounds((Reason.CHANGED,), (Reason.SWEEP, Reason.ACTIVE), fair=False)
SWEPT = Rounds((Reason.CHANGED,), (Reason.ACTIVE, Reason.SWEEP), fair=True)


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
    settled: bool = False
    """Changed, and the hint says its last run is no longer active: likely a finish to report."""
    changed_at: float | None = None
    """When the change happened, as the hint says (the platform's last activity)."""


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
    reasons: tuple[Reason, ...] = (Reason.CHANGED, Reason.SWEEP, Reason.ACTIVE),
    fair: bool = False,
    force: bool = False,
    leave_for: tuple[Reason, ...] = (),
) -> Plan:
    """The listings to make now, at most `allowance` of them (None: no limit), for the
    `reasons` given: in their order, or — `fair` — all together, the most overdue first.
    `force` makes every agent due (`watcher once`). `tracks` come in sweep order: ties in
    "least recently listed" keep it. `leave_for`: the reasons of a later round — when an
    agent is due for one, one listing of a limited allowance (of two or more) is left to it."""
    due: list[tuple[Reason, Track]] = []
    waiting = False
    for track in tracks:
        reason = _why_due(track, now, cadence, force)
        if reason in reasons:
            due.append((reason, track))
        elif reason in leave_for:
            waiting = True
    if waiting and allowance is not None and allowance > 1:
        allowance -= 1
    if fair:
        due.sort(key=lambda item: (-_overdue(item[1], item[0], now, cadence), _seen(item[1])))
    else:
        due.sort(key=lambda item: _rank(item[0], item[1], reasons))
    take = due if allowance is None else due[: max(0, allowance)]
    result = Plan([(t.agent, reason) for reason, t in take])
    if len(take) < len(due):
        result.skipped["budget"] += len(due) - len(take)
    return result


def _why_due(track: Track, now: float, cadence: Cadence, force: bool) -> Reason | None:
    if track.changed:
        return Reason.CHANGED
    if track.active:
        due = force or _since(track, now) >= cadence.active - cadence.slack
        return Reason.ACTIVE if due else None
    due = force or _since(track, now) >= cadence.idle - cadence.slack
    return Reason.SWEEP if due else None


def _rank(reason: Reason, track: Track, reasons: tuple[Reason, ...]) -> tuple[object, ...]:
    """Changed agents first (in their own order), then a run in progress never listed, then
    by reason and within it by `_order`."""
    changed = reason is Reason.CHANGED
    return (not changed, changed or _seen(track), reasons.index(reason), _order(reason, track))


def _seen(track: Track) -> bool:
    """False for an agent whose hint says a run is in progress that this process has never
    listed: it goes first in its round (at a first start, the runs most likely to finish — or
    hang — soon are the ones to know)."""
    return not (track.active and track.listed_at is None)


def _since(track: Track, now: float) -> float:
    return float("inf") if track.listed_at is None else now - track.listed_at


def _order(reason: Reason, track: Track) -> tuple[bool, float]:
    if reason is Reason.CHANGED:  # a settled run first, then the oldest change
        at = float("-inf") if track.changed_at is None else track.changed_at
        return (not track.settled, at)
    return (False, float("-inf") if track.listed_at is None else track.listed_at)


def _overdue(track: Track, reason: Reason, now: float, cadence: Cadence) -> float:
    """How many of its own intervals an agent has waited since its last listing."""
    interval = cadence.active if reason is Reason.ACTIVE else cadence.idle
    return _since(track, now) / max(interval, 1.0)


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
