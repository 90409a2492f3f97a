"""What a configuration reload (SIGHUP) changes: a pure comparison of two `Settings`.

`plan_reload(running, loaded)` says which sources start, stop or restart with a new
configuration, which subscriptions changed, and which keys cannot change while the daemon runs
(the state file, the events file, the HTTP listen address and token: they are kept until the
next start).
`watcher.daemon.Daemon.reload` applies the plan; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from watcher.config.settings import Settings
from watcher.config.sources import SourceConfig

T = TypeVar("T")

RESTART_ONLY = ("watcher.state_path", "watcher.events_path", "http.listen", "http.token_file")
"""Keys read once at start-up: a reload keeps their running values and says so."""


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The difference between the running and the newly loaded configuration."""

    settings: Settings
    """The settings to run with: the loaded ones, with the restart-only keys kept."""
    added: list[SourceConfig] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[SourceConfig] = field(default_factory=list)
    """Sources whose configuration changed: their poller restarts, their state is kept."""
    subscriptions_added: list[str] = field(default_factory=list)
    subscriptions_removed: list[str] = field(default_factory=list)
    subscriptions_changed: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    """Restart-only keys whose new value was not applied."""
    rules_changed: bool = False
    """`[[rules]]` (or `schedule_refresh`) changed: every poller restarts with the new rules."""
    outputs_changed: bool = False
    """`[outputs]` changed: the outputs sink is replaced."""

    def summary(self) -> dict[str, list[str]]:
        """The non-empty changes, by what changed (for the one log line of a reload)."""
        parts = {
            "sources_added": [s.name for s in self.added],
            "sources_removed": self.removed,
            "sources_changed": [s.name for s in self.changed],
            "subscriptions_added": self.subscriptions_added,
            "subscriptions_removed": self.subscriptions_removed,
            "subscriptions_changed": self.subscriptions_changed,
            "sections_changed": [
                name
                for name, changed in (
                    ("rules", self.rules_changed),
                    ("outputs", self.outputs_changed),
                )
                if changed
            ],
        }
        return {k: v for k, v in parts.items() if v}


def plan_reload(running: Settings, loaded: Settings) -> ReloadPlan:
    """Compare the running settings with freshly loaded ones. A disabled source counts as
    absent: disabling one stops its poller, enabling one starts it."""
    added, removed, changed = _compare(_enabled_sources(running), _enabled_sources(loaded))
    rules_changed = (running.rules, running.watcher.schedule_refresh) != (
        loaded.rules,
        loaded.watcher.schedule_refresh,
    )
    if rules_changed:  # a poller judges with the rules it was built with: all restart
        before = _enabled_sources(running)
        changed = [s for s in loaded.sources if s.enabled and s.name in before]
    subs_added, subs_removed, subs_changed = _compare(
        {s.name: s for s in running.subscriptions}, {s.name: s for s in loaded.subscriptions}
    )
    return ReloadPlan(
        settings=_kept_at_restart_only(running, loaded),
        added=added,
        removed=removed,
        changed=changed,
        subscriptions_added=[s.name for s in subs_added],
        subscriptions_removed=subs_removed,
        subscriptions_changed=[s.name for s in subs_changed],
        needs_restart=_restart_only_changes(running, loaded),
        rules_changed=rules_changed,
        outputs_changed=running.outputs != loaded.outputs,
    )


def _enabled_sources(settings: Settings) -> dict[str, SourceConfig]:
    return {s.name: s for s in settings.sources if s.enabled}


def _compare(old: Mapping[str, T], new: Mapping[str, T]) -> tuple[list[T], list[str], list[T]]:
    """What `new` adds (in its order), the names it drops (in the order of `old`), and what it
    changes (in its order), by name."""
    added = [item for name, item in new.items() if name not in old]
    removed = [name for name in old if name not in new]
    changed = [item for name, item in new.items() if name in old and old[name] != item]
    return added, removed, changed


def _kept_at_restart_only(running: Settings, loaded: Settings) -> Settings:
    """The loaded settings, with the running values of the keys read once at start-up."""
    kept_watcher = loaded.watcher.model_copy(
        update={
            "state_path": running.watcher.state_path,
            "events_path": running.watcher.events_path,
        }
    )
    return loaded.model_copy(update={"watcher": kept_watcher, "http": running.http})


def _restart_only_changes(running: Settings, loaded: Settings) -> list[str]:
    """The restart-only keys whose loaded value differs from the running one."""
    return [
        key
        for key, before, after in (
            (RESTART_ONLY[0], running.watcher.state_path, loaded.watcher.state_path),
            (RESTART_ONLY[1], running.watcher.events_path, loaded.watcher.events_path),
            (RESTART_ONLY[2], running.http.listen, loaded.http.listen),
            (RESTART_ONLY[3], running.http.token_file, loaded.http.token_file),
        )
        if before != after
    ]
