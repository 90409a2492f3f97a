"""The event model: what a type-specific field may be called."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from watcher.events import EventType, source_event


def test_event_data_named_like_a_field_of_the_event_is_refused() -> None:
    # Written after the event's own fields, such data never reached the JSON: refused instead.
    at = datetime(2026, 11, 23, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"\['agent_id'\] named like fields"):
        source_event(EventType.SOURCE_FAILED, source="cloud", source_kind="k", ts=at,
                     agent_id="2537")  # fmt: skip
    event = source_event(EventType.SOURCE_FAILED, source="cloud", source_kind="k", ts=at,
                         failed_agent_id="2537")  # fmt: skip
    assert event.to_dict()["failed_agent_id"] == "2537"
