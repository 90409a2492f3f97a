"""The world behind the simulated automation-runs API (seed 003).

Automations are made of steps; a run (uuid id) goes pending → running → succeeded, failed (at
a step, whose error the run's steps show; the steps after it are skipped) or cancelled. Tests
script a world directly (`add_automation`, `add_run`, `set_status` — any string, so unknown
statuses can be served — `cancel`, `retry`, `inject`); the demo lets `step()` move planned runs
along by the injected clock. `watcher_sim.automation` serves a world over HTTP.

Deterministic: the seed, the clock readings and the sequence of calls fix every id and time.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from watcher_sim.faults import SimServer
from watcher_sim.model import Clock, SimConflict, SimNotFound, utc_now
from watcher_sim.statuses import AUTOMATION_ACTIVE, AUTOMATION_FINISHED, AUTOMATION_RETRYABLE
from watcher_sim.timeline import Timeline, random_uuid

# The JSON fields of a run and of a step, in the seed's order.
RUN_FIELDS: tuple[str, ...] = (
    "automationId", "automationVersionId", "completedAt", "concurrencyKey", "createdAt",
    "durationSeconds", "error", "externalJobId", "id", "orchestratorType", "startedAt",
    "status", "tenantId", "triggerSourceId", "triggerSourceType", "triggerType", "updatedAt",
    "versionNumber",
)  # fmt: skip
STEP_FIELDS: tuple[str, ...] = (
    "actionRunId", "completedAt", "decisionId", "dependsOn", "durationSeconds", "error", "key",
    "name", "result", "resultTruncated", "startedAt", "status",
)  # fmt: skip

FATES = ("success", "failure", "cancelled")

DEFAULT_STEPS: tuple[tuple[str, str], ...] = (
    ("fetch", "Fetch page"),
    ("parse", "Parse listing"),
    ("store", "Store results"),
)

STEP_ERRORS = (
    "HTTP 503 from upstream after 3 attempts",
    "Timeout after 30s waiting for selector",
    "Schema validation failed: price is not a number",
)

_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(slots=True, eq=False)
class Automation:
    """An automation: what its runs are made of."""

    id: str
    name: str
    versionId: str
    versionNumber: int = 1
    steps: tuple[tuple[str, str], ...] = DEFAULT_STEPS  # (key, name), each depending on the last
    start_every: float | None = None  # autopilot: seconds between two starts


@dataclass(slots=True, eq=False)
class AutoStep:
    """One step of a run. The fields in `STEP_FIELDS` are served as JSON."""

    key: str
    name: str
    actionRunId: str | None = None
    completedAt: datetime | None = None
    decisionId: str | None = None
    dependsOn: list[str] = field(default_factory=list)
    durationSeconds: float | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    resultTruncated: bool = False
    startedAt: datetime | None = None
    status: str = "pending"


@dataclass(slots=True, eq=False)
class AutoRun:
    """A run of an automation. The fields in `RUN_FIELDS` are served as JSON."""

    id: str
    automationId: str
    automationVersionId: str
    versionNumber: int
    tenantId: str
    createdAt: datetime
    updatedAt: datetime
    status: str = "pending"
    startedAt: datetime | None = None
    completedAt: datetime | None = None
    durationSeconds: float | None = None
    error: dict[str, Any] | None = None
    concurrencyKey: str | None = None
    externalJobId: str | None = None
    orchestratorType: str = "local"
    triggerSourceId: str | None = None
    triggerSourceType: str = "user"
    triggerType: str = "manual"
    # Simulator only.
    steps: list[AutoStep] = field(default_factory=list)
    version: int = 0  # bumped by every change by hand: stale planned transitions are dropped


class AutomationWorld(SimServer):
    """A tenant of the automation-runs API in memory, scriptable and driven by a clock."""

    def __init__(
        self,
        *,
        now: Clock | None = None,
        seed: int = 0,
        tick: float = 1.5,
        api_keys: Iterable[str] = ("sim-automation-key",),
        bearer_tokens: Iterable[str] = ("sim-automation-token",),
        tenant_id: str = "tenant-sim",
        latency: float = 0.0,
        rate_limit: int | None = None,
        rate_window: float = 60.0,
    ) -> None:
        super().__init__(
            now=now or utc_now, latency=latency, rate_limit=rate_limit, rate_window=rate_window
        )
        self.rng = random.Random(seed)
        self.tick = tick
        self.api_keys: set[str] = set(api_keys)
        self.bearer_tokens: set[str] = set(bearer_tokens)
        self.tenant_id = tenant_id
        self.automations: dict[str, Automation] = {}
        self.runs: dict[str, AutoRun] = {}
        self.timeline = Timeline()

    # ----------------------------------------------------------------- lookups

    def run(self, run_id: str) -> AutoRun:
        try:
            return self.runs[run_id.lower()]
        except KeyError:
            raise SimNotFound("Run not found") from None

    def listing(self, status: str | None = None) -> list[AutoRun]:
        """Every run, newest first (by createdAt, then id), optionally of one status."""
        runs = [r for r in self.runs.values() if status is None or r.status == status]
        return sorted(runs, key=lambda r: (r.createdAt, r.id), reverse=True)

    # ---------------------------------------------------------------- building

    def add_automation(
        self,
        automation_id: str | None = None,
        name: str | None = None,
        steps: Sequence[tuple[str, str]] = DEFAULT_STEPS,
    ) -> Automation:
        aid = automation_id or f"auto-{len(self.automations) + 1:03d}"
        if aid in self.automations:
            raise ValueError(f"automation {aid} already exists")
        automation = Automation(aid, name or aid, random_uuid(self.rng), steps=tuple(steps))
        self.automations[aid] = automation
        return automation

    def add_run(
        self,
        automation_id: str,
        status: str = "pending",
        *,
        run_id: str | None = None,
        failed_step: str | None = None,
        error: str | None = None,
        created: datetime | None = None,
    ) -> AutoRun:
        """Add a run created now (or `created`) in `status`; steps and times follow. A "failed"
        run fails at `failed_step` (default: the first step) with `error`."""
        run = self._new_run(self._automation(automation_id), created or self.now(), run_id)
        self._enter(run, status, created or self.now(), failed_step=failed_step, error=error)
        return run

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        failed_step: str | None = None,
        error: str | None = None,
    ) -> AutoRun:
        """Put a run in `status` now (any string: unknown statuses are served as given);
        cancels whatever the autopilot planned for it."""
        run = self.run(run_id)
        run.version += 1
        self._enter(run, status, self.now(), failed_step=failed_step, error=error)
        return run

    def start_run(
        self, automation_id: str, fate: str | None = None, *, at: datetime | None = None
    ) -> AutoRun:
        """A run created pending now (or `at`), then moved by `step()`: running a tick later,
        through its steps one tick each, to succeeded, failed (at a random step) or cancelled
        (midway) as `fate` says (random when None)."""
        fate = fate or self.rng.choice(FATES)
        if fate not in FATES:
            raise ValueError(f"unknown fate {fate!r}; one of {FATES}")
        now = at or self.now()
        automation = self._automation(automation_id)
        run = self._new_run(automation, now)
        self._enter(run, "pending", now)
        keys = [k for k, _ in automation.steps]
        t = timedelta(seconds=self.tick)
        version = run.version
        self._plan(run, version, now + t, "running")
        failing = self.rng.randrange(len(keys)) if keys else 0
        reached = {"success": len(keys), "failure": failing + 1}.get(fate, max(1, len(keys) // 2))
        for i in range(1, min(reached, len(keys))):  # each later step starts a tick after the last
            self._plan_step(run, version, now + t * (1 + i), keys[i])
        if fate == "success":
            self._plan(run, version, now + t * (1 + len(keys)), "succeeded")
        elif fate == "failure":
            when = now + t * (2 + failing)
            self._plan(run, version, when, "failed", failed_step=keys[failing] if keys else None)
        else:
            self._plan(run, version, now + t * (1 + max(1, len(keys) // 2)), "cancelled")
        return run

    def cancel(self, run_id: str) -> AutoRun:
        """What `POST …/{id}/cancel` does: an active run becomes cancelled."""
        run = self.run(run_id)
        if run.status not in AUTOMATION_ACTIVE:
            raise SimConflict(f"Run is {run.status}; only pending or running runs can be cancelled")
        return self.set_status(run_id, "cancelled")

    def retry(self, run_id: str, mode: str = "from_failed", step_key: str | None = None) -> AutoRun:
        """What `POST …/{id}/retry` does: a new run of the same automation, pending, that then
        succeeds. Only a failed or cancelled run can be retried."""
        run = self.run(run_id)
        if run.status not in AUTOMATION_RETRYABLE:
            raise SimConflict(f"Run is {run.status}; only failed or cancelled runs can be retried")
        if mode == "from_step" and step_key not in {s.key for s in run.steps}:
            raise SimConflict("stepKey must name a step of the run for mode from_step")
        new = self.start_run(run.automationId, "success")
        new.triggerType, new.triggerSourceType, new.triggerSourceId = "retry", "run", run.id
        return new

    # ------------------------------------------------------------------ autopilot

    def step(self) -> int:
        """Apply every planned transition and autopilot start due by the clock."""
        return self.timeline.run_due(self.now())

    def schedule_start(self, automation_id: str, at: datetime, fate: str | None = None) -> None:
        """Start a run of the automation at `at`, then every `start_every` seconds if set."""

        def start(when: datetime) -> None:
            automation = self.automations.get(automation_id)
            if automation is None:
                return
            busy = any(
                r.status in AUTOMATION_ACTIVE
                for r in self.runs.values()
                if r.automationId == automation_id
            )
            if not busy:
                self.start_run(automation_id, fate, at=when)
            if automation.start_every:
                jitter = self.rng.uniform(0.8, 1.2)
                self.schedule_start(
                    automation_id, when + timedelta(seconds=jitter * automation.start_every)
                )

        self.timeline.at(at, start)

    @classmethod
    def demo(
        cls, *, seed: int = 0, now: Clock | None = None, tick: float = 1.5, **kw: Any
    ) -> AutomationWorld:
        """Three automations with history; within ~5 ticks their first runs succeed, fail at
        a step and get cancelled. Later runs take random paths."""
        world = cls(now=now, seed=seed, tick=tick, **kw)
        start = world.now()
        for i, (aid, name, fate) in enumerate(DEMO_AUTOMATIONS):
            automation = world.add_automation(aid, name)
            for hours in (30, 20, 10):
                created = start - timedelta(hours=hours, minutes=11 * i)
                world.add_run(
                    aid, world.rng.choice(("succeeded", "succeeded", "failed")), created=created
                )
            automation.start_every = world.rng.uniform(8, 12) * tick
            world.schedule_start(aid, start + timedelta(seconds=(0.2 + 0.3 * i) * tick), fate)
        return world

    # --------------------------------------------------------------- internals

    def _automation(self, automation_id: str) -> Automation:
        try:
            return self.automations[automation_id]
        except KeyError:
            raise SimNotFound(f"Automation {automation_id} not found") from None

    def _new_run(self, automation: Automation, at: datetime, run_id: str | None = None) -> AutoRun:
        rid = (run_id or random_uuid(self.rng)).lower()
        if rid in self.runs:
            raise ValueError(f"run {rid} already exists")
        run = AutoRun(
            rid,
            automation.id,
            automation.versionId,
            automation.versionNumber,
            self.tenant_id,
            createdAt=at,
            updatedAt=at,
        )
        previous = None
        for key, name in automation.steps:
            run.steps.append(AutoStep(key, name, dependsOn=[previous] if previous else []))
            previous = key
        self.runs[rid] = run
        return run

    def _plan(self, run: AutoRun, version: int, when: datetime, status: str, **kw: Any) -> None:
        def apply(at: datetime) -> None:
            if run.version == version and run.status not in AUTOMATION_FINISHED:
                self._enter(run, status, at, **kw)

        self.timeline.at(when, apply)

    def _plan_step(self, run: AutoRun, version: int, when: datetime, key: str) -> None:
        def apply(at: datetime) -> None:
            if run.version == version and run.status == "running":
                run.updatedAt = at
                self._steps_until(run, at, key, "running")

        self.timeline.at(when, apply)

    def _enter(
        self,
        run: AutoRun,
        status: str,
        at: datetime,
        *,
        failed_step: str | None = None,
        error: str | None = None,
    ) -> None:
        """Move `run` to `status` at `at`; its times, error and steps follow."""
        run.status, run.updatedAt = status, at
        if status != "pending" and run.startedAt is None:
            run.startedAt = at
        if status in AUTOMATION_FINISHED:
            run.completedAt = at
            run.durationSeconds = round((at - (run.startedAt or at)).total_seconds(), 3)
        elif status in AUTOMATION_ACTIVE:
            run.completedAt = run.durationSeconds = None
            run.error = None
        if status == "running":
            self._steps_until(run, at, run.steps[0].key if run.steps else None, "running")
        elif status == "succeeded":
            self._steps_until(run, at, None, "succeeded")
        elif status == "failed":
            key = failed_step or (run.steps[0].key if run.steps else None)
            message = error or self.rng.choice(STEP_ERRORS)
            self._steps_until(run, at, key, "failed", message)
            run.error = {"type": "StepFailed", "message": f"Step {key} failed", "stepKey": key}
        elif status == "cancelled":
            for s in run.steps:
                if s.status in ("pending", "running"):
                    s.status, s.completedAt = "cancelled", at

    def _steps_until(
        self, run: AutoRun, at: datetime, key: str | None, state: str, error: str | None = None
    ) -> None:
        """Steps before `key` succeeded, `key` in `state` (with `error`), the rest pending
        (skipped after a failure). With key None every step ends in `state`."""
        reached = False
        span = timedelta(seconds=self.tick)
        for index, s in enumerate(run.steps):
            begun = (run.startedAt or at) + span * index
            if key is None or (not reached and s.key != key):
                s.status = state if key is None else "succeeded"
                s.startedAt, s.completedAt = min(begun, at), min(begun + span, at)
            elif s.key == key and not reached:
                reached = True
                s.status, s.startedAt = state, min(begun, at)
                if state != "running":
                    s.completedAt = at
                if error:
                    s.error = {"message": error}
            else:
                s.status = "skipped" if state == "failed" else "pending"
            if s.startedAt and s.completedAt:
                s.durationSeconds = round((s.completedAt - s.startedAt).total_seconds(), 3)
            s.actionRunId = s.actionRunId or (f"{run.id[:8]}-{s.key}" if s.startedAt else None)


# (automation id, name, how its first run ends)
DEMO_AUTOMATIONS: tuple[tuple[str, str, str], ...] = (
    ("invoice-sync", "Invoice sync", "success"),
    ("price-monitor", "Price monitor", "failure"),
    ("lead-enrichment", "Lead enrichment", "cancelled"),
)
