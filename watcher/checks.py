"""What `watcher check` says of each enabled source: whether it connects and is let in, and
what its request budget allows — the mode it polls in, how soon a change is seen, how often
every agent is listed.

Kept apart from the App: a check builds its sources (through `watcher.app.build_source`) but
opens no state file, starts no poller and records nothing, so it can run beside a daemon that
holds the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from watcher.app import build_source
from watcher.config import Settings
from watcher.durations import duration_of
from watcher.errors import SourceError
from watcher.planner import coverage
from watcher.sources.base import CheckResult, Source
from watcher.sources.http import HttpClient


@dataclass(slots=True)
class SourceCheck:
    name: str
    kind: str
    ok: bool
    lines: list[CheckResult] = field(default_factory=list)


async def check_sources(settings: Settings, http: HttpClient) -> list[SourceCheck]:
    """Connectivity and auth of every enabled source, and what its request budget allows
    (`watcher check`). Touches no state."""
    results = []
    for config in settings.sources:
        if not config.enabled:
            continue
        source = build_source(config, http)
        try:
            lines = await source.check()
        except SourceError as err:
            results.append(
                SourceCheck(source.name, source.kind, False, [CheckResult(False, err.detail)])
            )
            continue
        lines.extend(budget_lines(source))
        results.append(SourceCheck(source.name, source.kind, all(x.ok for x in lines), lines))
    return results


def budget_lines(source: Source) -> list[CheckResult]:
    """What the budget means for this source: the mode, how soon a change is seen, how often
    every agent is listed."""
    cfg = source.config
    rate = cfg.requests_per_minute
    budget = f"{rate} requests/min" if rate else "no limit"
    lines = [CheckResult(True, f"request budget: {budget}")]
    hinted = bool(source.hinted) and cfg.use_hints
    count = source.checked_agents
    if not hinted:
        why = (
            "the platform has no change hints"
            if source.hinted is None
            else "use_hints = false"
            if not cfg.use_hints
            else "the platform gives no lastActivity"
        )
        lines.append(CheckResult(True, f"mode: sweep ({why}): every agent is listed in turn"))
    else:
        text = "mode: change hints: each cycle lists the agents whose hint moved, then those "
        lines.append(CheckResult(True, text + "with a run in progress"))
    idle = cfg.sweep_interval if hinted else cfg.poll_interval
    cover = coverage(
        agents=count,
        per_minute=rate,
        cycle=cfg.poll_interval_active,
        idle=idle,
        hinted=hinted,
        listing_cost=source.listing_cost,
        jitter=cfg.jitter,
    )
    seen = "a hinted change" if hinted else "a change"
    lines.append(
        CheckResult(
            True,
            f"{seen} is seen within {duration_of(cover.detect)}; all {count} agent(s) are "
            f"listed at least every {duration_of(cover.sweep)}",
        )
    )
    return lines
