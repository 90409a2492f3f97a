"""Prometheus metrics of one `App`, in its own `CollectorRegistry` (never the global one, so a
process — a test run — can hold many Apps).

Counters are fed from the composition root: `observe_poll` with each poll's `PollReport` and its
duration, `observe_events` with every event as it is recorded (run and source events, and the
`notification.sent` / `notification.failed` events the alert channels record). Gauges that
describe the present — the outbox, the runs by phase, each source's health — are computed at
scrape time from callables the App provides, so they can never drift from the truth.

Where each agent stands (`watcher.standing`) is exported per agent — its last finish and
outcome, its failures in a row, its last success — so alert rules can say "no success in 24 h"
or "3 failures in a row". The App's registry also carries the process's own metrics (CPU,
memory, open files: prometheus_client's process and platform collectors) and
`watcher_build_info`.

Labels never carry a secret: a channel is labelled with the scheme and host of apprise's
privacy-masked URL only (`channel_label`) — no credentials, path or query string, where some
services keep tokens and recipients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watcher import __version__
from watcher.cycle import PollReport
from watcher.events import Event, EventType
from watcher.poller import SourcePoller
from watcher.redact import redact
from watcher.runs import Phase
from watcher.standing import Standing
from watcher.store import Store

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Content-Type of `render()`'s output (Prometheus text format 0.0.4)."""

# A `_created` series beside every counter is noise to alert rules. (The function is untyped.)
disable_created_metrics()  # type: ignore[no-untyped-call]

POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Poll durations span a fast local answer to several retried timeouts."""


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the scrape-time gauges need to know about one polled source."""

    name: str
    up: bool
    last_success: float | None  # Unix time of the last fully successful poll
    runs_by_phase: dict[str, int]
    requests: dict[str, int] = field(default_factory=dict)  # sent, by purpose
    budget: int = 0  # requests per minute in use (0: unlimited)
    budget_configured: int = 0
    spent: int = 0  # requests sent within the last minute
    throttled: int = 0  # 429s received
    concurrency: int = 0  # requests allowed in flight at once, now
    sweep_age: float | None = None  # seconds since the least recently listed agent was listed
    standings: Mapping[str, Standing] = field(default_factory=dict)  # by agent id


@dataclass(frozen=True, slots=True)
class OutboxState:
    depth: int
    oldest_age: float | None  # seconds the oldest undelivered row has waited


def source_states(pollers: Iterable[SourcePoller]) -> list[SourceState]:
    """The scrape-time view of each poller: health, last success, runs by phase (every phase
    present, zero included, so a series does not vanish when its last run moves on)."""
    states = []
    for poller in pollers:
        phases = {str(phase): 0 for phase in Phase}
        for runs in poller.runs.values():
            for state in runs.values():
                phases[str(state.phase)] += 1
        last = poller.last_success
        source = poller.source
        states.append(
            SourceState(
                name=poller.name,
                up=not poller.health.failing,
                last_success=last.timestamp() if last is not None else None,
                runs_by_phase=phases,
                requests=dict(source.requests),
                budget=source.budget.rate(),
                budget_configured=source.budget.per_minute,
                spent=source.budget.spent(),
                throttled=source.budget.throttled,
                concurrency=source.concurrency.limit,
                sweep_age=poller.sweep_age(),
                standings=poller.standings,
            )
        )
    return states


def outbox_state(store: Store | None, now: datetime) -> OutboxState | None:
    """The outbox gauges at scrape time; None once the state file is closed."""
    if store is None:
        return None
    oldest = store.oldest_pending()
    age = max(0.0, now.timestamp() - oldest) if oldest is not None else None
    return OutboxState(store.outbox_depth(), age)


def held_alerts(store: Store | None) -> list[tuple[str, str, int]]:
    """(subscription, reason, alerts) held in the outbox, at scrape time."""
    rows = store.held() if store is not None else []
    return [(h.target.split(":")[1], h.reason, h.count) for h in rows]


class _Present(Collector):
    """The gauges computed at each scrape."""

    def __init__(
        self,
        sources: Callable[[], Sequence[SourceState]],
        outbox: Callable[[], OutboxState | None],
    ) -> None:
        self._sources = sources
        self._outbox = outbox

    def collect(self) -> Iterator[Metric]:
        outbox = self._outbox()
        if outbox is not None:  # None: the state file is closed (shutting down)
            yield GaugeMetricFamily(
                "watcher_outbox_depth",
                "Undelivered (event, sink) rows waiting in the outbox.",
                value=outbox.depth,
            )
            yield GaugeMetricFamily(
                "watcher_outbox_oldest_age_seconds",
                "Seconds the oldest undelivered outbox row has waited (0 when empty).",
                value=outbox.oldest_age or 0.0,
            )
        runs = GaugeMetricFamily(
            "watcher_runs",
            "Runs in the state of each source, by phase.",
            labels=["source", "phase"],
        )
        up = GaugeMetricFamily(
            "watcher_source_up",
            "1 while the source's polls succeed, 0 while it fails.",
            labels=["source"],
        )
        last = GaugeMetricFamily(
            "watcher_source_last_success_timestamp_seconds",
            "Unix time of the source's last fully successful poll.",
            labels=["source"],
        )
        sources = self._sources()
        for source in sources:
            for phase, count in sorted(source.runs_by_phase.items()):
                runs.add_metric([source.name, phase], count)
            up.add_metric([source.name], 1.0 if source.up else 0.0)
            if source.last_success is not None:
                last.add_metric([source.name], source.last_success)
        yield runs
        yield up
        yield last
        yield from _budget_metrics(sources)
        yield from _agent_metrics(sources)


def _agent_metrics(sources: Sequence[SourceState]) -> Iterator[Metric]:
    """Where each agent that has finished a run stands, labelled by its id."""
    finish = GaugeMetricFamily(
        "watcher_agent_last_finish_timestamp_seconds",
        "Unix time the agent's last finished run ended, labelled with its outcome.",
        labels=["source", "agent", "outcome"],
    )
    streak = GaugeMetricFamily(
        "watcher_agent_consecutive_failures",
        "Failures in a row of the agent's runs, up to now (a success resets it; stopped and "
        "skipped runs neither count nor reset).",
        labels=["source", "agent"],
    )
    success = GaugeMetricFamily(
        "watcher_agent_last_success_timestamp_seconds",
        "Unix time the agent's last successful run ended.",
        labels=["source", "agent"],
    )
    for source in sources:
        for agent_id, standing in sorted(source.standings.items()):
            if standing.last_finish is not None and standing.last_outcome is not None:
                labels = [source.name, agent_id, standing.last_outcome]
                finish.add_metric(labels, standing.last_finish.timestamp())
            streak.add_metric([source.name, agent_id], standing.failures)
            if standing.last_success is not None:
                success.add_metric([source.name, agent_id], standing.last_success.timestamp())
    yield finish
    yield streak
    yield success


def _budget_metrics(sources: Sequence[SourceState]) -> Iterator[Metric]:
    """What each source spends of its request budget, and how."""
    requests = CounterMetricFamily(
        "watcher_requests",
        "Requests sent to a platform, by purpose (hints, runs, sweep, enrich, download).",
        labels=["source", "purpose"],
    )
    throttled = CounterMetricFamily(
        "watcher_throttled", "429 answers received (the platform's budget).", labels=["source"]
    )
    gauges = {
        "budget": GaugeMetricFamily(
            "watcher_request_budget_per_minute",
            "Requests per minute the source may send now (lower than configured after a 429; "
            "0: unlimited).",
            labels=["source"],
        ),
        "budget_configured": GaugeMetricFamily(
            "watcher_request_budget_configured_per_minute",
            "requests_per_minute as configured (0: unlimited).",
            labels=["source"],
        ),
        "spent": GaugeMetricFamily(
            "watcher_requests_last_minute", "Requests sent within the last 60 s.", labels=["source"]
        ),
        "concurrency": GaugeMetricFamily(
            "watcher_concurrency",
            "Requests the source allows in flight at once now (adaptive).",
            labels=["source"],
        ),
        "sweep_age": GaugeMetricFamily(
            "watcher_sweep_oldest_age_seconds",
            "Seconds since the runs of the least recently listed agent were listed.",
            labels=["source"],
        ),
    }
    for source in sources:
        for purpose, count in sorted(source.requests.items()):
            requests.add_metric([source.name, purpose], count)
        throttled.add_metric([source.name], source.throttled)
        for attribute, family in gauges.items():
            value = getattr(source, attribute)
            if value is not None:
                family.add_metric([source.name], value)
    yield requests
    yield throttled
    yield from gauges.values()


class _Held(Collector):
    """Alerts held in the outbox by noise control (mute windows, flapping), at each scrape."""

    def __init__(self, held: Callable[[], Sequence[tuple[str, str, int]]]) -> None:
        self._held = held

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "watcher_notifications_held",
            "Alerts held in the outbox until a mute window closes or an agent stops flapping, "
            "by subscription and reason.",
            labels=["subscription", "reason"],
        )
        for subscription, reason, count in self._held():
            gauge.add_metric([subscription, reason], count)
        yield gauge


class Metrics:
    """The metrics of one App: counters it feeds, gauges it computes at scrape, and `render()`."""

    def __init__(
        self,
        sources: Callable[[], Sequence[SourceState]] = lambda: [],
        outbox: Callable[[], OutboxState | None] = lambda: None,
        held: Callable[[], Sequence[tuple[str, str, int]]] = lambda: [],
    ) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.polls = Counter(
            "watcher_polls",
            "Polls of a source, by result (ok, failed, skipped while a platform asked to wait).",
            ["source", "result"],
            registry=registry,
        )
        self.poll_duration = Histogram(
            "watcher_poll_duration_seconds",
            "Seconds one poll of a source took, requests and state write included.",
            ["source"],
            buckets=POLL_BUCKETS,
            registry=registry,
        )
        self.api_errors = Counter(
            "watcher_api_errors",
            "Failed platform requests (after retries), by error kind and HTTP status "
            '("none" when no HTTP answer came).',
            ["source", "kind", "status"],
            registry=registry,
        )
        self.events = Counter(
            "watcher_events", "Events recorded, by type.", ["type"], registry=registry
        )
        self.notifications_sent = Counter(
            "watcher_notifications_sent",
            "Alerts delivered, by subscription and channel (the URL privacy-masked).",
            ["subscription", "channel"],
            registry=registry,
        )
        self.notifications_failed = Counter(
            "watcher_notifications_failed",
            "Alerts given up after their retries, by subscription and channel.",
            ["subscription", "channel"],
            registry=registry,
        )
        self.notifications_suppressed = Counter(
            "watcher_notifications_suppressed",
            "Alerts not sent by noise control, by subscription and reason (silenced, muted, "
            "after, repeat).",
            ["subscription", "reason"],
            registry=registry,
        )
        self.reloads = Counter(
            "watcher_config_reloads",
            "Configuration reloads (SIGHUP), by result (applied, rejected).",
            ["result"],
            registry=registry,
        )
        registry.register(_Present(sources, outbox))
        Info("watcher_build", "The running watcher's version.", registry=registry).info(
            {"version": __version__}
        )
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        registry.register(_Held(held))

    def observe_poll(self, report: PollReport, seconds: float) -> None:
        """Count one poll: its result, its duration, and each request that failed."""
        result = "skipped" if report.skipped else "ok" if report.ok else "failed"
        self.polls.labels(report.source, result).inc()
        if not report.skipped:
            self.poll_duration.labels(report.source).observe(seconds)
        for error in report.errors:
            status = str(error.http_status) if error.http_status is not None else "none"
            self.api_errors.labels(report.source, error.kind, status).inc()

    def observe_reload(self, result: str) -> None:
        """Count a config reload: "applied" or "rejected"."""
        self.reloads.labels(result).inc()

    def observe_events(self, events: Iterable[Event]) -> None:
        """Count freshly recorded events (each is recorded once, so counted once)."""
        for event in events:
            self.events.labels(event.type).inc()
            if event.type == EventType.NOTIFICATION_SENT:
                self.notifications_sent.labels(*_channel(event)).inc()
            elif event.type == EventType.NOTIFICATION_FAILED:
                self.notifications_failed.labels(*_channel(event)).inc()
            elif event.type == EventType.NOTIFICATION_SUPPRESSED:
                reason = str(event.get("reason") or "")
                self.notifications_suppressed.labels(_channel(event)[0], reason).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def _channel(event: Event) -> tuple[str, str]:
    """(subscription, channel) of a notification event: the channel's label (see
    `channel_label`), or the sink's name for a sink that has no URL."""
    subscription = str(event.get("subscription") or "")
    url = event.get("channel")
    channel = channel_label(str(url)) if url else str(event.get("sink") or "")
    return subscription, redact(channel)


def channel_label(masked: str) -> str:
    """The scheme and host of a channel's privacy-masked URL: "mailtos://smtp.example.com" for
    "mailtos://alerts:****@smtp.example.com/oncall%40example.com?…". What a label may carry:
    no credentials, path or query string, where tokens and recipients are kept."""
    parts = urlsplit(masked)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}" if parts.scheme else redact(masked.split("?", 1)[0])
