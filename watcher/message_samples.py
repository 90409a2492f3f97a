"""The sample events every alert template is test-rendered against when the config loads
(`watcher.messages.check_template`): one of each kind an alert is written for, with the fields
its default template reads — so a template that fails on any of them fails at start-up."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from watcher.events import Event, EventType
from watcher.runs import Outcome


def _sample(type: EventType, outcome: Outcome | None = None, **data: Any) -> Event:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    run = type.startswith("run.")
    return Event(
        id="sample",
        type=str(type),
        ts=now,
        source="cloud",
        source_kind="sequentum_cloud",
        agent_id="2537" if run else None,
        agent_name="steam" if run else None,
        run_id="22552" if run else None,
        status="Failure" if run else None,
        outcome=outcome,
        message="Timeout waiting for page to load",
        data=tuple(sorted(data.items())),
    )


SAMPLES = (
    _sample(
        EventType.RUN_FINISHED,
        Outcome.FAILURE,
        diagnostics={"possibleCauses": ["x"]},
        failures_in_a_row=3,
        failing_since="2025-12-31T22:00:00Z",
        last_success="2025-12-31T20:00:00Z",
        agent_previous_outcome="failure",
    ),
    _sample(
        EventType.RUN_FINISHED,
        Outcome.SUCCESS,
        failures_in_a_row=0,
        failing_since=None,
        last_success="2026-01-01T00:00:00Z",
        agent_previous_outcome="failure",
    ),
    replace(
        _sample(
            EventType.RUN_FINISHED,
            Outcome.FAILURE,
            log_path="steam-20260101.log",
            acc_agent_id="5f0c1f36-8e4b-4c1e-9b65-6d1b5f3c2a10",
            failures_in_a_row=1,
            failing_since="2026-01-01T00:00:00Z",
            last_success=None,
        ),
        source="acc",
        source_kind="sequentum_acc",
        status="Failed",
    ),
    replace(
        _sample(
            EventType.RUN_FINISHED,
            Outcome.FAILURE,
            failed_steps=[["fetch", "Fetch page", "HTTP 500"], ["parse", None, None]],
        ),
        source="automation",
        source_kind="automation_runs",
        agent_name=None,
        status="failed",
    ),
    _sample(EventType.RUN_REOPENED),
    _sample(EventType.RUN_STUCK, running_s=9000.0, limit="max_duration 2h 0m"),
    _sample(EventType.RUN_ANOMALY, Outcome.SUCCESS, check="min_records", value=0, threshold=1),
    replace(_sample(EventType.RUN_RETRY_REQUESTED), data=(("try", 1),)),
    replace(
        _sample(
            EventType.AGENT_MISSED_SCHEDULE,
            expected_at="2026-01-01T02:00:00Z",
            schedule="0 2 * * * UTC",
            rule="nightly",
            grace_s=1800.0,
            last_run={
                "run_id": "22552",
                "status": "Success",
                "started_at": None,
                "ended_at": "2025-12-31T02:40:00Z",
            },
        ),
        agent_id="2537",
    ),
    _sample(EventType.SOURCE_FAILED, error="auth", http_status=401),
    _sample(EventType.SOURCE_RECOVERED, down_s=60.0),
)
