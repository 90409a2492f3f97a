"""What people look at: one view of where watcher stands — its sources, its agents (marked with
the rules' findings that still hold: a run stuck, a schedule missed), the latest events, what
waits in the outbox, the active silences and the alerts each channel holds — built here, in
one place, for the status page (`/`), its JSON twin (`/api/status`) and
`watcher status [--json]`.

A view is plain data, ready for JSON: strings, numbers, booleans, None, lists and dicts, every
moment an ISO 8601 UTC string. It is built from `SourceFacts` — what the running daemon's
pollers know (`live_sources`), or what the state file says when `watcher status` reads it
without the daemon (`stored_sources`; what only a running daemon knows, such as the request
rate in use, is then None) — and from the store. Nothing here writes.

Every text in a view came from a platform or a user: whoever renders it escapes it. Links are
kept only when they are http(s), so a platform cannot smuggle a `javascript:` URL into a page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from watcher import __version__
from watcher.codec import iso
from watcher.config.problems import WILDCARD
from watcher.live import STALE_INTERVALS
from watcher.rulestore import Finding
from watcher.runs import RunSnapshot
from watcher.sourcestate import SourceHealth
from watcher.standing import Standing, standings
from watcher.store import Store

if TYPE_CHECKING:
    from watcher.app import App
    from watcher.config import SourceConfig
    from watcher.poller import SourcePoller

RECENT_EVENTS = 50
"""Events a view lists, newest first."""

EVENT_FIELDS = (
    "id", "type", "ts", "source", "agent_id", "agent_name", "run_id", "status", "outcome",
    "message", "url", "failures_in_a_row",
)  # fmt: skip
"""What a view keeps of each event: enough to say what happened and to follow it up."""

TARGET_LABELS = {"eventlog": "events file", "outputs": "outputs"}
"""Outbox targets that are not alert channels, as people call them."""


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What a view says about one source; None where it is not known (see the module doc)."""

    name: str
    kind: str
    poll_interval: float
    health: SourceHealth
    last_success: datetime | None
    standings: Mapping[str, Standing] = field(default_factory=dict)
    per_minute: int = 0
    """The request budget as configured (0: unlimited)."""
    rate: int | None = None
    """Requests per minute in use now (lower than configured after a 429)."""
    spent: int | None = None
    """Requests sent within the last minute."""
    mode: str | None = None
    """"hints" (the platform says which agents changed) or "sweep" (every agent in turn)."""
    sweep_age: float | None = None


def live_sources(pollers: Iterable[SourcePoller]) -> list[SourceFacts]:
    """The facts of the running daemon's pollers."""
    facts = []
    for poller in pollers:
        source, cfg = poller.source, poller.source.config
        budget = source.budget
        facts.append(
            SourceFacts(
                name=poller.name,
                kind=source.kind,
                poll_interval=cfg.poll_interval,
                health=poller.health,
                last_success=poller.last_success,
                standings=poller.standings,
                per_minute=budget.per_minute,
                rate=budget.rate(),
                spent=budget.spent(),
                mode=_mode(poller),
                sweep_age=poller.sweep_age(),
            )
        )
    return facts


def _mode(poller: SourcePoller) -> str | None:
    """How the poller finds what changed; None before its first poll has asked the platform."""
    if not poller.source.config.use_hints:
        return "sweep"
    if poller.hinted is None:
        return None
    return "hints" if poller.hinted else "sweep"


def stored_sources(configs: Iterable[SourceConfig], store: Store) -> list[SourceFacts]:
    """The facts the state file holds of the enabled sources in `configs` (the daemon may be
    running; this only reads)."""
    return [
        SourceFacts(
            name=cfg.name,
            kind=cfg.kind,
            poll_interval=cfg.poll_interval,
            health=store.source_health(cfg.name),
            last_success=store.last_success(cfg.name),
            standings=standings(store.finishes(cfg.name)),
            per_minute=cfg.requests_per_minute,
        )
        for cfg in configs
        if cfg.enabled
    ]


def of_app(app: App) -> dict[str, Any]:
    """The view of a running App: its pollers, its store, its alert channels."""
    assert app.store is not None and app.dispatcher is not None, "the App is not open"
    sinks = app.dispatcher.sinks.values()
    channels = [s for s in sinks if s.name.startswith("notify:")]  # alert channels (`Channel`)
    return build(
        live_sources(app.pollers), app.store, now=app.clock(), targets=target_labels(channels)
    )


def build(
    sources: Sequence[SourceFacts],
    store: Store,
    *,
    now: datetime,
    targets: Mapping[str, str],
    events: int = RECENT_EVENTS,
) -> dict[str, Any]:
    """The view. `targets` names each outbox target as people know it (see `target_labels`)."""
    names = {s.name for s in sources}
    agents = _agents(sources, store)
    outbox = _outbox(store, targets, now.timestamp())
    held = store.held()
    return {
        "version": __version__,
        "generated_at": iso(now),
        "sources": [_source(s, now, agents) for s in sources],
        "agents": agents,
        "events": [
            _event(e) for e in store.recent_events(events) if e.get("source") in names | _OWN
        ],
        "outbox": outbox,
        "silences": _silences(store, now),
        "held": [
            {
                "channel": targets.get(h.target, h.target),
                "count": h.count,
                "reason": h.reason,
                "until": iso(datetime.fromtimestamp(h.until, UTC)),
            }
            for h in held
        ],
        "totals": {
            "agents": len(agents),
            "failing_agents": sum(1 for a in agents if a["failures_in_a_row"]),
            "failing_sources": sum(1 for s in sources if s.health.failing),
            "outbox": sum(t["depth"] for t in outbox),
            "held": sum(h.count for h in held),
        },
    }


_OWN = {"watcher"}
"""Events of watcher itself (state.restored), shown whatever the sources."""


def _source(facts: SourceFacts, now: datetime, agents: list[dict[str, Any]]) -> dict[str, Any]:
    health = facts.health
    last = facts.last_success
    age = (now - last).total_seconds() if last is not None else None
    if health.failing:
        state = "failing"
    elif last is None:
        state = "never polled"
    else:
        state = "ok"
    return {
        "name": facts.name,
        "kind": facts.kind,
        "health": state,
        "stale": age is None or age > STALE_INTERVALS * facts.poll_interval,
        "failing_since": iso(health.since) if health.failing else None,
        "last_success": iso(last),
        "last_error": health.last_error if health.failing else None,
        "agents": sum(1 for a in agents if a["source"] == facts.name),
        "budget": {"per_minute": facts.per_minute, "rate": facts.rate, "spent": facts.spent},
        "mode": facts.mode,
        "sweep_age_s": round(facts.sweep_age, 1) if facts.sweep_age is not None else None,
    }


def _agents(sources: Sequence[SourceFacts], store: Store) -> list[dict[str, Any]]:
    """A row per agent of the `sources` the state file knows: its newest run, its streak and
    the rules' findings that still hold (`marks`)."""
    by_source = {s.name: s for s in sources}
    latest = {(s.source, s.agent_id): s for s in store.latest_runs() if s.source in by_source}
    marks: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for finding in store.open_findings():
        marks.setdefault((finding.source, finding.agent_id), []).append(_mark(finding))
    return [
        {
            "source": source,
            "agent_id": agent_id,
            **_latest_run(latest.get((source, agent_id)), name),
            **_streak(by_source[source].standings.get(agent_id) or Standing()),
            "marks": marks.get((source, agent_id), []),
        }
        for source, agent_id, name in store.agents()
        if source in by_source and agent_id != WILDCARD  # a wildcard source's unit: no agent
    ]


def _latest_run(run: RunSnapshot | None, name: str | None) -> dict[str, Any]:
    """An agent's name and what its newest run says; an agent without a run has only its
    name (as the agent listing gave it) and the state "none"."""
    if run is None:
        return {
            "name": name, "run_id": None, "status": None, "phase": None, "outcome": None,
            "state": "none", "started_at": None, "ended_at": None, "message": None, "url": None,
        }  # fmt: skip
    outcome = str(run.outcome) if run.outcome else None
    phase = str(run.phase)
    return {
        "name": run.agent_name or name,
        "run_id": run.run_id,
        "status": run.status,
        "phase": phase,
        "outcome": outcome,
        "state": outcome or phase or "none",
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "message": run.message,
        "url": safe_link(run.url),
    }


def _mark(finding: Finding) -> dict[str, Any]:
    """A finding as the view marks its agent: "stuck" names its run, "missed" its slot."""
    mark: dict[str, Any] = {"mark": finding.mark, "since": iso(finding.since)}
    if finding.mark == "stuck":
        mark["run_id"] = finding.run_id
    else:
        mark.update(expected_at=iso(finding.expected_at), schedule=finding.schedule)
    mark["message"] = finding.message
    return mark


def _streak(standing: Standing) -> dict[str, Any]:
    """Where an agent stands over its recent finishes (see `watcher.standing`)."""
    return {
        "failures_in_a_row": standing.failures,
        "failing_since": iso(standing.failing_since),
        "last_success": iso(standing.last_success),
        "last_outcome": standing.last_outcome,
        "last_finish": iso(standing.last_finish),
    }


def _event(body: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: body.get(key) for key in EVENT_FIELDS}
    out["url"] = safe_link(out["url"])
    return out


def _outbox(store: Store, targets: Mapping[str, str], now_ts: float) -> list[dict[str, Any]]:
    return [
        {
            "target": t.target,
            "channel": targets.get(t.target, f"{t.target} (no longer configured)"),
            "depth": t.depth,
            "oldest_age_s": round(max(0.0, now_ts - t.oldest), 1),
            "attempts": t.attempts,
            "last_error": reason(t.last_error) if t.last_error else None,
        }
        for t in store.outbox_by_target()
    ]


def target_labels(channels: Iterable[Any]) -> dict[str, str]:
    """Outbox target → what a person recognises: for an alert channel (a `Channel`), its
    subscription and its URL as `shown_url` gives it."""
    labels = dict(TARGET_LABELS)
    for channel in channels:
        labels[channel.name] = f"{channel.subscription.name}: {shown_url(channel.masked)}"
    return labels


def shown_url(masked: str) -> str:
    """A channel's privacy-masked apprise URL without its query string: apprise's options
    there are noise beside the channel's name, and some services carry a token in them."""
    return masked.split("?", 1)[0].split("#", 1)[0]


_URL_FIRST = re.compile(r"^\w[\w+.-]*://\S*?: ")


def reason(error: str) -> str:
    """A channel's delivery error without the masked URL it starts with: the channel is named
    beside it already, and a long URL would leave no room for the reason."""
    return _URL_FIRST.sub("", error, count=1)


def safe_link(url: object) -> str | None:
    """`url` if it is an http(s) link, else None (a page must never follow `javascript:`)."""
    if isinstance(url, str) and url[:8].lower().startswith(("http://", "https://")):
        return url
    return None


# --- narrowing, for `watcher status --source/--agent` --------------------------------------------


def agent_matches(agent: Mapping[str, Any], pattern: str) -> bool:
    """Does `pattern` (an id, a name or a glob; names in any case) name this agent?"""
    names = (str(agent.get("agent_id") or ""), str(agent.get("name") or "").lower())
    return any(n and fnmatchcase(n, p) for n in names for p in (pattern, pattern.lower()))


def narrow(view: dict[str, Any], *, source: str | None, agent: str | None) -> dict[str, Any]:
    """The view of one source and/or the agents `agent` names (the outbox stays whole: it is
    per channel, not per source)."""
    sources = [s for s in view["sources"] if source is None or s["name"] == source]
    agents = [a for a in view["agents"] if _of_source(a, source) and _named(a, agent)]
    events = [e for e in view["events"] if _of_source(e, source)]
    if agent is not None:
        events = _about(events, agents)
    return {
        **view,
        "sources": sources,
        "agents": agents,
        "events": events,
        "totals": _totals_of(view["totals"], sources, agents),
    }


def _about(events: list[dict[str, Any]], agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events about one of `agents`."""
    kept = {(a["source"], a["agent_id"]) for a in agents}
    return [e for e in events if (e["source"], e["agent_id"]) in kept]


def _totals_of(
    totals: Mapping[str, Any], sources: list[dict[str, Any]], agents: list[dict[str, Any]]
) -> dict[str, Any]:
    """`totals` with what counts sources and agents recounted over those kept (the outbox and
    held rows stay whole)."""
    return {
        **totals,
        "agents": len(agents),
        "failing_agents": sum(1 for a in agents if a["failures_in_a_row"]),
        "failing_sources": sum(1 for s in sources if s["health"] == "failing"),
    }


def _of_source(item: Mapping[str, Any], source: str | None) -> bool:
    """Is an agent or event of `source` (None: of any)?"""
    return source is None or item.get("source") == source


def _named(item: Mapping[str, Any], agent: str | None) -> bool:
    """Does `agent` (None: any) name this agent?"""
    return agent is None or agent_matches(item, agent)


def _silences(store: Store, now: datetime) -> list[dict[str, Any]]:
    """The silences in force or to come, their matchers as `watcher silence list` shows them."""
    return [
        {
            "id": s.id,
            "state": s.state(now),
            "matchers": s.describe(),
            "starts_at": iso(s.starts_at),
            "ends_at": iso(s.ends_at),
            "comment": s.comment,
            "created_by": s.created_by,
        }
        for s in store.silences(ending_after=now)
    ]
