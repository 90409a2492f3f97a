"""What alerts say, rendered from events as they arrive: in memory or read back from JSON."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from watcher.events import Event
from watcher.messages import DIGEST_LINES, Display, Templates, render_digests
from watcher.runs import Outcome

STEPS = "Failed steps:\n- fetch (Fetch page): HTTP 500\n- parse: Timeout\n- store\n"


def failure(**data: Any) -> Event:
    return Event(
        id="e1",
        type="run.finished",
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        source="automation",
        source_kind="automation_runs",
        agent_id="prices",
        run_id="r1",
        status="failed",
        outcome=Outcome.FAILURE,
        data=tuple(data.items()),
    )


@pytest.mark.parametrize(
    "steps",
    [
        (("fetch", "Fetch page", "HTTP 500"), ("parse", "parse", "Timeout"), ("store", None, None)),
        [["fetch", "Fetch page", "HTTP 500"], ["parse", "parse", "Timeout"], ["store", None, None]],
        [
            {"key": "fetch", "name": "Fetch page", "error": "HTTP 500"},
            {"key": "parse", "name": "parse", "error": "Timeout"},
            {"key": "store"},
        ],
    ],
    ids=["tuples", "json-lists", "objects"],
)
def test_failed_steps_are_listed_whatever_their_shape(steps: Any) -> None:
    body = Templates().render(failure(failed_steps=steps)).body
    assert STEPS in body + "\n"


def test_malformed_steps_are_left_out_not_fatal() -> None:
    body = Templates().render(failure(failed_steps=["fetch", None, [], [7, "", ""]])).body
    assert "Failed steps:\n- ?\n- 7\n" in body


def test_user_templates_read_steps_by_name_index_or_unpacking() -> None:
    templates = Templates(
        body="{% for key, name, error in event.failed_steps %}{{ key }}={{ error }};{% endfor %}"
        "{{ event.failed_steps[0].name }}|{{ event.failed_steps[0][2] }}"
    )
    body = templates.render(failure(failed_steps=[["fetch", "Fetch page", "HTTP 500"]])).body
    assert body == "fetch=HTTP 500;Fetch page|HTTP 500"


def test_a_digest_lists_every_event_in_parts_of_at_most_digest_lines() -> None:
    runs = [replace(failure(), id=f"e{i}", run_id=f"r{i}", message="x " * 100) for i in range(81)]
    down = Event(id="s", type="source.failed", ts=runs[0].ts, source="cloud",
                 source_kind="sequentum_cloud", message="HTTP 401")  # fmt: skip
    digests = render_digests([*runs, down], "ops")
    assert [len(events) for events, _ in digests] == [DIGEST_LINES, DIGEST_LINES, 2]
    assert [m.title[-8:] for _, m in digests] == ["part 1/3", "part 2/3", "part 3/3"]
    lines = [line for _, m in digests for line in m.body.splitlines()]
    assert len(lines) == 82 and lines[0].startswith("- ❌ prices failed: run r0 — x x")
    assert len(lines[0]) < 160 and lines[0].endswith("…")
    assert lines[-1] == "- 🔌 cloud source.failed — HTTP 401"
    ((_, single),) = render_digests(runs[:2], "ops")
    assert single.title == "watcher: 2 events for ops (2 failures)"


def test_a_failure_says_a_retry_is_under_way_and_the_last_how_many_were_tried() -> None:
    planned = failure(retry={"try": 1, "of": 2, "at": "2026-11-23T12:05:15Z"}, retries_tried=0)
    body = Templates().render(planned).body
    assert "A retry is under way: try 1 of 2, at 2026-11-23 12:05:15 UTC." in body
    spent = Templates().render(failure(retries_tried=2)).body
    assert "Retried 2 time(s) already; no more retries." in spent
    assert "retr" not in Templates().render(failure()).body.lower()


def test_a_missed_slot_of_an_agent_that_never_ran_in_the_display_timezone() -> None:
    missed = Event(
        id="m1",
        type="agent.missed_schedule",
        ts=datetime(2026, 1, 1, 2, 30, tzinfo=UTC),
        source="acc",
        source_kind="sequentum_acc",
        agent_id="sequentum/Demo/nightly",
        agent_name="nightly",
        message="no run started within 30m 0s of 2026-01-01T02:00:00Z (0 3 * * * Europe/Berlin)",
        data=(
            ("expected_at", "2026-01-01T02:00:00Z"),
            ("grace_s", 1800.0),
            ("last_run", None),
            ("rule", "nightly"),
            ("schedule", "0 3 * * * Europe/Berlin"),
        ),
    )
    message = Templates(display=Display(ZoneInfo("Europe/Berlin"))).render(missed)
    assert message.title == (
        "📅 nightly (sequentum/Demo/nightly): no run started for the 2026-01-01 03:00:00 CET slot"
    )
    assert message.body.splitlines()[2:6] == [
        "Agent: nightly (sequentum/Demo/nightly)",
        "Expected: 2026-01-01 03:00:00 CET",
        "Schedule: 0 3 * * * Europe/Berlin (rule nightly)",
        "Last run: none on record",
    ]
    assert "Link:" not in message.body
