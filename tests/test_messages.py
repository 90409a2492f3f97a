"""What alerts say, rendered from events as they arrive: in memory or read back from JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from watcher.messages import Templates
from watcher.models import Event, Outcome

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
