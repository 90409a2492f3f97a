"""The judgements no status makes: is a run stuck, did a "success" deliver, did a schedule
fire? Pure: facts and the clock in, findings out. `watcher.judge` feeds them and turns what
they find into events.

- `stuck`: a run pending or running past `max_duration`, or past `max_duration_factor` times
  the median duration of the agent's last 10 successes (whichever is shorter).
- `anomalies`: a success with fewer records than `min_records`, or fewer than `records_drop`
  of the median of the last 10 successes; a finished run with more errors than `max_errors`.
- `slots` / `missed`: the starts a cron expectation announces, and which of them no run
  started within `grace` of (healthchecks.io's "period + grace", per slot).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from statistics import median
from zoneinfo import ZoneInfo

from cronsim import CronSim

from watcher.config.rules import RuleConfig
from watcher.durations import duration_of

HISTORY = 10
"""Successes an agent's durations and record counts are compared against."""
MIN_HISTORY = 3
"""Fewer successes than this are no history to compare against."""
EARLY = timedelta(minutes=1)
"""A run that starts this much before its slot still counts for it (clocks differ)."""


def matches_agent(patterns: Sequence[str], agent_id: str | None, name: str | None) -> bool:
    """Does an agent match any of `patterns` (ids, names, globs; names in any case)? No
    patterns match every agent."""
    if not patterns:
        return True
    candidates = [c for c in (agent_id or "", (name or "").lower()) if c]
    lowered = [p.lower() for p in patterns]
    return any(fnmatchcase(c, p) for p in (*patterns, *lowered) for c in candidates)


class RuleBook:
    """The configured rules; `rule_for` picks the first that matches an agent."""

    def __init__(self, rules: Sequence[RuleConfig]) -> None:
        self.rules = list(rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule_for(self, source: str, agent_id: str, name: str | None) -> RuleConfig | None:
        for rule in self.rules:
            if rule.sources and source not in rule.sources:
                continue
            if matches_agent(rule.agents, agent_id, name):
                return rule
        return None


@dataclass(frozen=True, slots=True)
class Success:
    """What a past success tells: how long it took, how many records it brought."""

    duration: float | None
    records: int | None


@dataclass(frozen=True, slots=True)
class Limit:
    seconds: float
    why: str
    """"max_duration 2h" or "3x the median of 10 successes (41m)"."""


def run_limit(rule: RuleConfig, history: Sequence[Success]) -> Limit | None:
    """How long a run of an agent under `rule` may take, and why; None when no limit."""
    limits = []
    if rule.max_duration is not None:
        limits.append(Limit(rule.max_duration, f"max_duration {_short(rule.max_duration)}"))
    durations = [s.duration for s in history[-HISTORY:] if s.duration is not None]
    if rule.max_duration_factor is not None and len(durations) >= MIN_HISTORY:
        typical = median(durations)
        limits.append(
            Limit(
                rule.max_duration_factor * typical,
                f"{rule.max_duration_factor:g}x the median of {len(durations)} successes "
                f"({_short(typical)})",
            )
        )
    return min(limits, key=lambda limit: limit.seconds, default=None)


def stuck(
    rule: RuleConfig, started: datetime, now: datetime, history: Sequence[Success]
) -> Limit | None:
    """The limit a run that started at `started` has passed by `now`, or None."""
    limit = run_limit(rule, history)
    if limit is None or (now - started).total_seconds() <= limit.seconds:
        return None
    return limit


@dataclass(frozen=True, slots=True)
class Anomaly:
    check: str
    """min_records, records_drop or max_errors."""
    value: float
    threshold: float
    history: str | None = None
    """What the threshold came from, for the alert ("median 1,012 of 10 successes")."""


def anomalies(
    rule: RuleConfig,
    *,
    success: bool,
    records: int | None,
    errors: int | None,
    history: Sequence[Success],
) -> list[Anomaly]:
    """What is wrong with a finished run that its status does not say."""
    found = []
    if success and records is not None:
        if rule.min_records is not None and records < rule.min_records:
            found.append(Anomaly("min_records", records, rule.min_records))
        counts = [s.records for s in history[-HISTORY:] if s.records is not None]
        if rule.records_drop is not None and len(counts) >= MIN_HISTORY:
            typical = median(counts)
            threshold = rule.records_drop * typical
            if records < threshold:
                found.append(
                    Anomaly(
                        "records_drop",
                        records,
                        threshold,
                        f"median {typical:,.0f} of the last {len(counts)} successes",
                    )
                )
    if rule.max_errors is not None and errors is not None and errors > rule.max_errors:
        found.append(Anomaly("max_errors", errors, rule.max_errors))
    return found


def slots(rule: RuleConfig, after: datetime, until: datetime) -> list[datetime]:
    """The starts `rule.schedule` expects in (after, until], in UTC."""
    if rule.schedule is None or until <= after:
        return []
    zone = ZoneInfo(rule.timezone)
    found = []
    for moment in CronSim(rule.schedule, after.astimezone(zone)):
        if moment > until:
            break
        if moment > after:
            found.append(moment.astimezone(after.tzinfo))
    return found


def started_for(slot: datetime, grace: float, starts: Iterable[datetime]) -> bool:
    """Did a run start within the slot's window: from a minute before to `grace` after?"""
    return any(slot - EARLY <= start <= slot + timedelta(seconds=grace) for start in starts)


def _short(seconds: float) -> str:
    return duration_of(seconds)
