"""`watcher status [--source NAME] [--agent ID|NAME|GLOB] [--json]`: where watcher stands, from
the state file.

The state file is read without its lease and never written (`Store.open(readonly=True)`), so
this works while the daemon runs. The view is the status page's (`watcher.view`): the health
of each source and since when it fails, each agent's latest run, its failures in a row and its
marks (a run stuck, a schedule slot missed), what waits in the outbox per channel; with
`--json`, that view as JSON for scripts — what only a running daemon knows (the request rate in
use, the mode) is null there. A `--source` or `--agent` that names nothing configured is a usage
error (exit 2), in one line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from watcher import view as views
from watcher.app import build_channels
from watcher.config import Settings
from watcher.config.problems import WILDCARD
from watcher.durations import duration_of
from watcher.errors import ConfigError
from watcher.store import Store

EXIT_OK = 0
SHOWN_AGENTS = 8
"""Agents named in the error of an `--agent` that matches none."""


def status_command(
    settings: Settings,
    *,
    source: str | None = None,
    agent: str | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
    now: datetime | None = None,
) -> int:
    out = out or sys.stdout
    now = now or datetime.now(UTC)
    configured = [s.name for s in settings.sources]
    if source is not None and source not in configured:
        have = ", ".join(configured)
        raise ConfigError([f"--source {source}: no such source (have: {have})"])
    view = read_view(settings, now)
    if agent is not None:
        _check_agent(settings, view, agent)
    path = settings.watcher.state_path
    if not path.exists() and not as_json:
        print(f"no state yet at {path}: run `watcher once` or start the daemon", file=out)
        return EXIT_OK
    view = views.narrow(view, source=source, agent=agent)
    if as_json:
        print(json.dumps(view, indent=2, ensure_ascii=False), file=out)
    else:
        print_view(view, out)
    return EXIT_OK


def read_view(settings: Settings, now: datetime) -> dict[str, Any]:
    """The view from the state file, read-only (an empty one, in memory, before any poll)."""
    path = settings.watcher.state_path
    store = Store.open(path, readonly=True) if path.exists() else Store.open(":memory:")
    try:
        sources = views.stored_sources(settings.sources, store)
        channels = build_channels(settings, clock=lambda: now) if store.outbox_depth() else []
        targets = views.target_labels(channels)  # apprise is loaded only when it is needed
        return views.build(sources, store, now=now, targets=targets)
    finally:
        store.close()


def _check_agent(settings: Settings, view: dict[str, Any], pattern: str) -> None:
    """A usage error unless `pattern` names an agent recorded or configured."""
    agents = view["agents"]
    if any(views.agent_matches(a, pattern) for a in agents):
        return
    ids = {str(a) for s in settings.sources for a in s.agents if str(a) != WILDCARD}
    if any(views.agent_matches({"agent_id": i}, pattern) for i in ids):
        return
    names = [f"{a['name']} ({a['agent_id']})" if a["name"] else a["agent_id"] for a in agents]
    names += sorted(ids - {a["agent_id"] for a in agents})
    have = ", ".join(names[:SHOWN_AGENTS]) or "none recorded yet"
    if len(names) > SHOWN_AGENTS:
        have += f", … {len(names) - SHOWN_AGENTS} more"
    raise ConfigError([f"--agent {pattern}: no such agent (have: {have})"])


def print_view(view: dict[str, Any], out: TextIO) -> None:
    """The view as tables: sources, agents, then the outbox by channel."""
    rows: list[tuple[str, ...]] = [
        ("SOURCE", "KIND", "HEALTH", "FAILING SINCE", "LAST SUCCESS", "LAST ERROR")
    ]
    for s in view["sources"]:
        error = (s["last_error"] or "-")[:80]
        rows.append((s["name"], s["kind"], s["health"], _at(s["failing_since"]),
                     _at(s["last_success"]), error))  # fmt: skip
    _table(rows, out)
    print(file=out)
    rows = [("SOURCE", "AGENT", "NAME", "RUN", "STATUS", "PHASE", "OUTCOME", "MARKS",
             "ENDED", "IN A ROW", "LAST SUCCESS")]  # fmt: skip
    for a in view["agents"]:
        rows.append(
            (
                a["source"],
                a["agent_id"],
                a["name"] or "",
                a["run_id"] or "-",
                a["status"] or "-",
                a["phase"] or "-",
                a["outcome"] or ("" if a["run_id"] else "-"),
                _marks(a["marks"]),
                _at(a["ended_at"]) if a["run_id"] else "-",
                str(a["failures_in_a_row"]),
                _at(a["last_success"]),
            )
        )
    _table(rows, out)
    totals = view["totals"]
    print(
        f"\n{totals['agents']} agent(s); {totals['outbox']} delivery(ies) waiting in the outbox",
        file=out,
    )
    _print_noise(view, out)
    if view["outbox"]:
        print(file=out)
        rows = [("CHANNEL", "WAITING", "OLDEST", "ATTEMPTS", "LAST ERROR")]
        for t in view["outbox"]:
            rows.append((t["channel"], str(t["depth"]), duration_of(t["oldest_age_s"]),
                         str(t["attempts"]), (t["last_error"] or "")[:80]))  # fmt: skip
        _table(rows, out)


def _print_noise(view: dict[str, Any], out: TextIO) -> None:
    """The silences in force or to come, and the alerts each channel holds."""
    silences, held = view["silences"], view["held"]
    count = view["totals"]["held"]
    print(file=out)
    print(f"{len(silences)} silence(s) active or pending; {count} alert(s) held", file=out)
    if silences:
        print(file=out)
        rows: list[tuple[str, ...]] = [("ID", "STATE", "MATCHERS", "ENDS", "BY", "COMMENT")]
        for s in silences:
            rows.append((s["id"], s["state"], s["matchers"], _at(s["ends_at"]),
                         s["created_by"], s["comment"]))  # fmt: skip
        _table(rows, out)
    if held:
        print(file=out)
        rows = [("CHANNEL", "HELD", "WHY", "UNTIL")]
        for h in held:
            rows.append((h["channel"], str(h["count"]), h["reason"], _at(h["until"])))
        _table(rows, out)


def _marks(marks: Sequence[dict[str, Any]]) -> str:
    """An agent's marks in a word each: `stuck:RUN`, `missed:SLOT` (the latest slot missed)."""
    said = [
        f"stuck:{m['run_id']}" if m["mark"] == "stuck" else f"missed:{m['expected_at']}"
        for m in marks
    ]
    return ",".join(said) or "-"


def _at(moment: str | None) -> str:
    return moment or "-"


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out
        )
