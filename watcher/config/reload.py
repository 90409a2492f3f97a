"""What a configuration reload (SIGHUP) changes: a pure comparison of two `Settings`.

`plan_reload(running, loaded)` says which sources start, stop or restart with a new
configuration, which subscriptions changed, and which keys cannot change while the daemon runs
(the state file, the events file, the HTTP listen address and token: they are kept until the
next start).
`App.reload` applies the plan; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from watcher.config.settings import Settings
from watcher.config.sources import SourceConfig

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

    def summary(self) -> dict[str, list[str]]:
        """The non-empty changes, by what changed (for the one log line of a reload)."""
        parts = {
            "sources_added": [s.name for s in self.added],
            "sources_removed": self.removed,
            "sources_changed": [s.name for s in self.changed],
            "subscriptions_added": self.subscriptions_added,
            "subscriptions_removed": self.subscriptions_removed,
            "subscriptions_changed": self.subscriptions_changed,
        }
        return {k: v for k, v in parts.items() if v}


def plan_reload(running: Settings, loaded: Settings) -> ReloadPlan:
    """Compare the running settings with freshly loaded ones. A disabled source counts as
    absent: disabling one stops its poller, enabling one starts it."""
    old = {s.name: s for s in running.sources if s.enabled}
    new = {s.name: s for s in loaded.sources if s.enabled}
    old_subs = {s.name: s for s in running.subscriptions}
    new_subs = {s.name: s for s in loaded.subscriptions}

    kept_watcher = loaded.watcher.model_copy(
        update={
            "state_path": running.watcher.state_path,
            "events_path": running.watcher.events_path,
        }
    )
    settings = loaded.model_copy(update={"watcher": kept_watcher, "http": running.http})
    needs_restart = [
        key
        for key, before, after in (
            (RESTART_ONLY[0], running.watcher.state_path, loaded.watcher.state_path),
            (RESTART_ONLY[1], running.watcher.events_path, loaded.watcher.events_path),
            (RESTART_ONLY[2], running.http.listen, loaded.http.listen),
            (RESTART_ONLY[3], running.http.token_file, loaded.http.token_file),
        )
        if before != after
    ]
    return ReloadPlan(
        settings=settings,
        added=[s for name, s in new.items() if name not in old],
        removed=[name for name in old if name not in new],
        changed=[s for name, s in new.items() if name in old and old[name] != s],
        subscriptions_added=[n for n in new_subs if n not in old_subs],
        subscriptions_removed=[n for n in old_subs if n not in new_subs],
        subscriptions_changed=[n for n in new_subs if n in old_subs and old_subs[n] != new_subs[n]],
        needs_restart=needs_restart,
    )
