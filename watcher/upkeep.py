"""Upkeep of an open App: delivering what it recorded before it stops, giving up the rows no
sink serves any more, and keeping the state file small.

- `settle` delivers what is due, and what those deliveries record in turn, within a deadline
  (`shutdown_timeout` unless told): `watcher once` ends with it, and so does a shutdown. What
  is still in flight then stays in the outbox, and the App is marked `abandoned`.
- `expire_orphans` gives up the undelivered rows of targets that nothing serves since the
  config changed, each after `orphan_max_age`: `watcher once`, the daemon after a reload, and
  `housekeeping` call it.
- `housekeeping` (hourly in the daemon) forgets what can no longer matter: delivered events
  past their retention, runs no listing can show again, silences long expired, orphaned rows.

These are functions of the App rather than methods of it: the App builds the store, the
dispatcher and the pollers they work on (and stays the one place that does); what is done with
them between polls is policy of its own, read against the settings running at the time.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

import structlog

from watcher.config import Settings
from watcher.noise.silences import RETENTION

if TYPE_CHECKING:
    from watcher.app import App

log = structlog.get_logger("watcher")

ORPHAN_MAX_AGE = 24 * 3600.0
"""Seconds the rows of a removed sink other than a channel wait for it to come back."""


async def settle(app: App, timeout: float | None = None) -> bool:
    """Deliver what is due, and what that delivery causes, within `timeout` (default
    `shutdown_timeout`); what is still in flight then stays in the outbox."""
    assert app.dispatcher is not None
    settled = await app.dispatcher.settle(
        app.settings.watcher.shutdown_timeout if timeout is None else timeout
    )
    app.abandoned = app.abandoned or not settled
    return settled


async def expire_orphans(app: App) -> int:
    """Give up the undelivered rows of targets no sink serves, once `orphan_max_age` old;
    return how many left the outbox."""
    assert app.dispatcher is not None
    return await app.dispatcher.expire_orphans(partial(orphan_max_age, app.settings))


def orphan_max_age(settings: Settings, target: str) -> float:
    """How long undelivered rows of a target nobody serves may wait for it: a channel of
    a subscription that still exists, its `max_age`; of one that is gone, not at all."""
    if target.startswith("notify:"):
        name = target.split(":")[1]
        sub = next((s for s in settings.subscriptions if s.name == name), None)
        return sub.max_age if sub is not None else 0.0
    if target == "outputs":
        return settings.outputs.max_age
    return ORPHAN_MAX_AGE


async def housekeeping(app: App) -> None:
    """Keep the state file small: forget delivered events older than
    `event_retention_days`, runs that can no longer appear in any listing, silences
    expired longer than their retention, and the undelivered rows of channels removed
    from the config."""
    store = app.store
    assert store is not None and app.dispatcher is not None
    days = app.settings.watcher.event_retention_days
    events = store.prune_events(app.clock() - timedelta(days=days))
    silences = store.prune_silences(app.clock() - RETENTION)
    runs = 0
    for poller in app.pollers:
        async with poller.paused():
            runs += poller.prune()
    orphans = await expire_orphans(app)
    if events or runs or orphans or silences:
        log.info("state pruned", events=events, runs=runs, orphans=orphans,
                 silences=silences, older_than_days=days)  # fmt: skip
